"""The publish lock: a lease in the store that frees itself when its holder dies.

A lock held by a process that was killed must not block every later run. So the lock is a lease
with an expiry, renewed by a heartbeat while its holder lives. Only create-only writes decide who
holds it: generation ``n`` is ``locks/<name>/<n>.json``; whoever creates ``n+1`` (allowed once ``n``
is released or expired) holds the lock, and of two runs trying at once exactly one succeeds.
Works on a local folder and on S3 (conditional puts) alike.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from tandem.data.store import NotFound, Store
from tandem.data.store_keys import LOCKS


class LeaseTimeout(RuntimeError):
    pass


def _now() -> float:
    return time.time()


def _gen_key(name: str, n: int) -> str:
    return f"{LOCKS}{name}/{n:012d}.json"


def _generations(store: Store, name: str) -> list[int]:
    gens = []
    for key in store.list(f"{LOCKS}{name}/"):
        stem = key.rsplit("/", 1)[-1].split(".")[0]
        if stem.isdigit():
            gens.append(int(stem))
    return sorted(set(gens))


def _free(store: Store, name: str, n: int) -> bool:
    """Generation n no longer holds the lock: released, or not renewed in time."""
    if store.exists(_gen_key(name, n).replace(".json", ".released")):
        return True
    try:
        record = json.loads(store.get(_gen_key(name, n)))
        return float(record["expires_at"]) < _now()
    except (NotFound, ValueError, KeyError, TypeError):
        return True  # unreadable: a holder that died mid-write


class Lease:
    def __init__(self, store: Store, name: str, generation: int, owner: str, seconds: int):
        self.store, self.name, self.generation, self.owner, self.seconds = store, name, generation, owner, seconds
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"lease-{name}")

    def record(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires_at": _now() + self.seconds,
                           "renewed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            self.store.put(_gen_key(self.name, self.generation), self.record())  # only its holder writes it

    def held(self) -> bool:
        """Still ours: nobody took a later generation (fencing before each write that matters)."""
        return _generations(self.store, self.name)[-1:] == [self.generation]

    def release(self) -> None:
        self._stop.set()
        self.store.put(_gen_key(self.name, self.generation).replace(".json", ".released"), b"", if_absent=True)


def try_acquire(store: Store, name: str, seconds: int) -> Lease | None:
    gens = _generations(store, name)
    latest = gens[-1] if gens else 0
    if latest and not _free(store, name, latest):
        return None
    lease = Lease(store, name, latest + 1, uuid.uuid4().hex, seconds)
    if not store.put(_gen_key(name, latest + 1), lease.record(), if_absent=True):
        return None  # another run took it first
    lease._beat.start()
    return lease


@contextmanager
def lease(store: Store, name: str, seconds: int, wait_seconds: float, poll_seconds: float = 2.0):
    """Hold the lease `name` for the block; wait up to `wait_seconds` for it (a dead holder's lease
    expires within `seconds`)."""
    deadline = _now() + wait_seconds
    while (held := try_acquire(store, name, seconds)) is None:
        if _now() > deadline:
            raise LeaseTimeout(f"the lock {name!r} stayed held for {wait_seconds:.0f} s: another run is publishing")
        time.sleep(poll_seconds)
    try:
        yield held
    finally:
        held.release()
