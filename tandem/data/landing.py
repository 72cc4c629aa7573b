"""The landing zone's layout and a discovery that costs O(new), not O(everything ever uploaded).

Devices upload to ``incoming/dt=YYYY-MM-DD/<device>/<batch>.parquet`` (the upload day, UTC). Batches
in the earlier flat layout (``incoming/<device>/<batch>.parquet``) are still read: the flat part is one
more partition, ``flat``.

Per partition the ingest keeps a *cursor* under ``ledger/days/<partition>/``: small create-only
files, each naming the batches one chunk of one run recorded. A run lists only the partitions not yet
closed, and within them only skips what the cursor names; a batch missing from it (a run killed
before its cursor write, or two runs racing) is simply offered again and the create-only ledger
write and the table's transactions keep it counted once. A day two days old whose every batch is in
its cursor gets a ``<partition>.closed`` marker and is never listed again.

The rule this relies on: a device writes into the folder of the day it uploads (UTC); an upload
into a day that is already closed would not be seen.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import PurePosixPath

from tandem.data.store import LocalStore, NotFound, S3Store, Store
from tandem.data.store_keys import CURSORS, INCOMING

FLAT = "flat"
BATCH_SUFFIXES = (".parquet", ".sealed")
DAY = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
OPEN_DAYS = 2  # today and yesterday stay open: uploads started before midnight land late
COMPACT_AFTER = 16  # cursor parts per partition before a run merges them into one


def upload_day(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d")


def upload_key(device: str, batch_id: str, suffix: str, day: str | None = None) -> str:
    """Where a device uploads a batch: ``incoming/dt=<day>/<device>/<batch><suffix>``."""
    return f"{INCOMING}dt={day or upload_day()}/{device}/{batch_id}{suffix}"


def partition_of(key: str) -> str:
    """``dt=YYYY-MM-DD`` for a batch in the day layout, ``flat`` for one in the earlier flat layout."""
    parts = PurePosixPath(key).parts
    return parts[1] if len(parts) > 2 and DAY.match(parts[1]) else FLAT


def children(store: Store, prefix: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, object names) directly under `prefix` (which ends with '/'): one LIST with a
    delimiter on S3, one directory read locally; never the objects further down."""
    if isinstance(store, LocalStore):
        base = store.root / prefix
        if not base.is_dir():
            return [], []
        dirs, files = [], []
        with os.scandir(base) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                (dirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
        return sorted(dirs), sorted(files)
    if isinstance(store, S3Store):
        full = store._key(prefix) if prefix else (f"{store.prefix}/" if store.prefix else "")
        dirs, files = [], []
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=full, Delimiter="/"):
            dirs += [p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", [])]
            files += [o["Key"][len(full):] for o in page.get("Contents", [])]
        return sorted(dirs), sorted(files)
    raise TypeError(f"cannot list folders of a {type(store).__name__}")


def _is_batch(key: str) -> bool:
    return key.endswith(BATCH_SUFFIXES)


def _irregular(store: Store, key: str) -> bool:
    """A local landing zone's entry that is not a regular file (a symlink, a linked folder, a FIFO):
    offered like a batch so that the ingest records and quarantines it instead of skipping it unseen.
    S3 holds nothing but objects."""
    if not isinstance(store, LocalStore):
        return False
    path = store.root / key
    return path.is_symlink() or not path.is_file()


def _offered(store: Store, key: str) -> bool:
    return _is_batch(key) or _irregular(store, key)


def _closed(store: Store) -> set[str]:
    _, files = children(store, CURSORS)
    return {f[: -len(".closed")] for f in files if f.endswith(".closed")}


def read_cursor(store: Store, partition: str) -> set[str]:
    """The batch ids the cursor of `partition` names (the union of its parts)."""
    done: set[str] = set()
    for name in children(store, f"{CURSORS}{partition}/")[1]:
        try:
            done.update(json.loads(store.get(f"{CURSORS}{partition}/{name}")))
        except NotFound:  # merged away by a concurrent compaction: the merged part holds it
            continue
    return done


def write_cursor(store: Store, partition: str, batch_ids) -> None:
    """Add a part to the cursor of `partition` (create-only, a new name each time: no read-modify-write)."""
    ids = sorted(set(batch_ids))
    if ids:
        store.put(f"{CURSORS}{partition}/{uuid.uuid4().hex}.json", json.dumps(ids).encode(), if_absent=True)


def _compact(store: Store, partition: str) -> None:
    parts = children(store, f"{CURSORS}{partition}/")[1]
    if len(parts) <= COMPACT_AFTER:
        return
    write_cursor(store, partition, read_cursor(store, partition))  # the merged part first, then the old ones go
    for name in parts:
        store.delete(f"{CURSORS}{partition}/{name}")


def open_partitions(store: Store) -> list[str]:
    """Day partitions not closed yet, and ``flat`` when the landing zone still has flat-layout folders."""
    dirs, _ = children(store, INCOMING)
    closed = _closed(store)
    days = [d for d in dirs if DAY.match(d) and d not in closed]
    stray = any(_irregular(store, f"{INCOMING}{f}") for f in children(store, INCOMING)[1])
    return days + ([FLAT] if stray or any(not DAY.match(d) for d in dirs) else [])


def partition_keys(store: Store, partition: str) -> list[str]:
    if partition != FLAT:
        return [k for k in store.list(f"{INCOMING}{partition}/") if _offered(store, k)]
    dirs, files = children(store, INCOMING)
    stray = [f"{INCOMING}{f}" for f in files if _irregular(store, f"{INCOMING}{f}")]  # e.g. a linked device folder
    return stray + [k for d in dirs if not DAY.match(d) for k in store.list(f"{INCOMING}{d}/") if _offered(store, k)]


def new_keys(store: Store, batch_id_of) -> dict[str, list[str]]:
    """Per open partition, the batch keys its cursor does not name yet (`batch_id_of(key)`)."""
    found = {}
    for partition in open_partitions(store):
        done = read_cursor(store, partition)
        found[partition] = [k for k in partition_keys(store, partition) if batch_id_of(k) not in done]
    return found


def settle(store: Store, partitions, batch_id_of, today: date | None = None) -> list[str]:
    """After a run: compact busy cursors, and close the days old enough whose every batch the cursor
    names. Returns the partitions closed now."""
    today = today or datetime.now(timezone.utc).date()
    closed = []
    for partition in partitions:
        _compact(store, partition)
        m = DAY.match(partition)
        if not m or date.fromisoformat(m.group(1)) > today - timedelta(days=OPEN_DAYS):
            continue
        done = read_cursor(store, partition)
        if all(batch_id_of(k) in done for k in partition_keys(store, partition)):
            store.put(f"{CURSORS}{partition}.closed", b"", if_absent=True)
            closed.append(partition)
    return closed
