"""The gateway's state, all in the store under ``gateway/`` with create-only writes, so any number of
stateless replicas on one store agree:

- ``gateway/installs/<install id>.json``: an enrollment (the public key, how it was attested);
- ``gateway/nonces/<day of the request's signed timestamp>/<install id>/<nonce>``: a nonce seen (a replay
  is refused). A replay carries its signed timestamp, so it meets its nonce in the same day's folder; a
  day older than the clock skew allows can be deleted whole (the timestamp check refuses its requests);
- ``gateway/counts/<day>/<install|pseudonym>/<id>/<slot>``: one object per batch landed that day. A
  batch claims the lowest free slot number below the limit with a create-only write; two replicas
  racing for one slot cannot both win, so the count never passes the limit;
- ``gateway/idempotency/<install id>/<key digest>.json``: the body digest and answer of a landed request;
- ``gateway/uploads/<install id>/<name>``: a wire batch uploaded with a presigned POST, until completed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from tandem.data.store import NotFound, Store
from tandem.data.store_keys import GATEWAY as PREFIX


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def install_key(install: str) -> str:
    return f"{PREFIX}installs/{install}.json"


def read_install(store: Store, install: str) -> dict | None:
    try:
        return json.loads(store.get(install_key(install)))
    except NotFound:
        return None


def enroll(store: Store, install: str, record: dict) -> bool:
    """True when this enrollment is new, False when the install was already enrolled."""
    return store.put(install_key(install), json.dumps(record, sort_keys=True).encode(), if_absent=True)


def _nonce_key(install: str, nonce: str, timestamp: int) -> str:
    day = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    return f"{PREFIX}nonces/{day}/{install}/{nonce}"


def nonce_seen(store: Store, install: str, nonce: str, timestamp: int) -> bool:
    return store.exists(_nonce_key(install, nonce, timestamp))


def claim_nonce(store: Store, install: str, nonce: str, timestamp: int) -> bool:
    """False when another request (perhaps on another replica) used this nonce first."""
    return store.put(_nonce_key(install, nonce, timestamp), b"", if_absent=True)


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d")


def seconds_to_midnight(now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()) + 1)


def _slots(day: str, kind: str, who: str) -> str:
    return f"{PREFIX}counts/{day}/{kind}/{who}/"


def claim_slot(store: Store, day: str, kind: str, who: str, limit: int) -> str | None:
    """The key of a slot claimed for one more batch, or None when all `limit` slots are taken."""
    prefix = _slots(day, kind, who)
    slot = len(store.list(prefix))  # slots are never above the count unless one was released: then we skip on
    while slot < limit:
        key = f"{prefix}{slot:06d}"
        if store.put(key, b"", if_absent=True):
            return key
        slot += 1
    return None


def release_slot(store: Store, key: str | None) -> None:
    if key:
        store.delete(key)


def staged_prefix(install: str) -> str:
    """Where an install's presigned wire-format uploads wait for `POST /v1/uploads/complete`."""
    return f"{PREFIX}uploads/{install}/"


def _idem_key(install: str, key: str) -> str:
    return f"{PREFIX}idempotency/{install}/{_digest(key)}.json"


def read_idempotent(store: Store, install: str, key: str) -> dict | None:
    try:
        return json.loads(store.get(_idem_key(install, key)))
    except NotFound:
        return None


def record_idempotent(store: Store, install: str, key: str, body_sha256: str, answer: dict) -> None:
    store.put(_idem_key(install, key), json.dumps({"body_sha256": body_sha256, "answer": answer}).encode(),
              if_absent=True)
