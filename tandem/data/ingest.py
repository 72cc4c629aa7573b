"""Ingest: find the batches in the landing zone that no run has processed, judge each once, and
record the outcome in the ledger. The one path that runs is `tandem.data.bulk_ingest.ingest_chunk` (a
chunk of one batch or many); this module holds its parts: discovery, the per-batch judge it falls
back on, the one admission decision, and the ledger. Quarantined batches are copied to ``quarantine/<batch>/`` with
the GX result and a one-line reason. Nothing is ever deleted from ``incoming/`` or ``quarantine/``.

Sealed batches (``incoming/<device>/<batch>.sealed``, `tandem.privacy.sealing`) are opened in memory with
the key from the environment and never written anywhere in the clear: a sealed batch that cannot
be opened (tampered, unknown key) or that fails validation is quarantined as its sealed bytes, with
a reason and a GX result that hold no example values.

The ledger (``ledger/batches/<batch>.json``, create-only writes) is what makes every batch count
exactly once: a batch with a ledger entry is never processed again, and two runs racing on the same
batch cannot both record it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pyarrow as pa

from tandem.data import identity, landing
from tandem.data import limits as batch_limits
from tandem.data.limits import Limits, ReferenceKeys, Usage
from tandem.data.store import NotFound, NotRegular, Store, get_json, put_json, sha256_hex
from tandem.data.store_keys import LEDGER, QUARANTINE
from tandem.data.validation import BatchVerdict, validate_batch
from tandem.privacy import sealing
from tandem.task import Task


@dataclass(frozen=True)
class BatchRef:
    batch_id: str
    key: str


BATCH_SUFFIXES = (".parquet", ".sealed")


def batch_ref(key: str) -> BatchRef:
    """A batch's id is a digest of its whole key: unique per object (two devices may both upload
    ``x.parquet``), and short whatever the file name (every internal name derives from it)."""
    return BatchRef(sha256_hex(key.encode())[:24], key)


_DIGEST_ID = re.compile(r"[0-9a-f]{24}")


def ledger_key(batch_id: str) -> str:
    return f"{LEDGER}{batch_id}.json"


def discover(store: Store) -> list[BatchRef]:
    """Batches in the landing zone's open partitions that their cursor does not name yet, in key order,
    one per batch id: O(new), not O(all) (`tandem.data.landing`). A batch that has a ledger entry but
    is missing from the cursor (a killed run) comes back, and its create-only ledger write keeps it
    counted once."""
    refs: dict[str, BatchRef] = {}
    for keys in landing.new_keys(store, lambda k: batch_ref(k).batch_id).values():
        for key in keys:
            refs.setdefault(batch_ref(key).batch_id, batch_ref(key))
    return sorted((r for r in refs.values() if not _counted_under_its_stem(store, r)), key=lambda r: r.key)


def _counted_under_its_stem(store: Store, ref: BatchRef) -> bool:
    """Stores from before batch ids were digests named a batch by its file stem: such a batch was
    counted already when a ledger entry under its stem names the same key."""
    stem = PurePosixPath(ref.key).stem
    if _DIGEST_ID.fullmatch(stem):
        return False
    try:
        return get_json(store, ledger_key(stem)).get("key") == ref.key
    except NotFound:
        return False


def ledger_entries(store: Store) -> list[dict]:
    return [get_json(store, k) for k in store.list(LEDGER) if k.endswith(".json")]


def accepted_entries(store: Store) -> list[dict]:
    return [e for e in ledger_entries(store) if e["outcome"] == "accepted"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


RETRY_REASONS = ("unreadable parquet",)  # maybe still being copied in: changed bytes under the key are judged again


def fetch(store: Store, ref: BatchRef) -> bytes | None:
    """A batch's bytes; None for an object that is not a regular file (a symlink, FIFO, device: never read)."""
    try:
        return store.get(ref.key)
    except NotFound:
        raise RuntimeError(f"batch {ref.batch_id} vanished from {ref.key}: the landing zone must not lose data") from None
    except NotRegular:
        return None


def fetch_with_meta(store: Store, ref: BatchRef) -> tuple[bytes | None, dict]:
    """`fetch`, and what identifies this version of the object (size, modified, etag) when the store says."""
    getter = getattr(store, "get_with_meta", None)
    if getter is None:
        return fetch(store, ref), {}
    try:
        return getter(ref.key)
    except NotFound:
        raise RuntimeError(f"batch {ref.batch_id} vanished from {ref.key}: the landing zone must not lose data") from None
    except NotRegular:
        return None, {}


def uploaded_at(meta: dict) -> datetime | None:
    return datetime.fromtimestamp(meta["modified"], timezone.utc) if meta.get("modified") else None


def not_regular(ref: BatchRef) -> tuple[BatchVerdict, dict]:
    reason = f"refused: {ref.key} is not a regular file (a symlink or special file); it was not read"
    return BatchVerdict(False, reason, {"success": False, "error": "not a regular file"}, 0), {"stored_format": "none"}


def record(store: Store, ref: BatchRef, data: bytes, verdict: BatchVerdict, transport: dict, run_id: str | None,
           facts: dict | None = None, meta: dict | None = None) -> tuple[dict, bool]:
    """Write a judged batch's outcome once: quarantine a bad one, then its ledger entry (create-only).
    `facts`: what an accepted batch's entry adds (policy, captured_from/to, table_version). Returns
    (the ledger entry, whether this call wrote it; else another run's entry)."""
    entry = {
        "batch_id": ref.batch_id,
        "key": ref.key,
        "sha256": sha256_hex(data),
        "size": len(data),
        "rows": verdict.rows,
        "outcome": "accepted" if verdict.ok else "quarantined",
        "reason": verdict.reason,
        "processed_at": _now(),
        "run_id": run_id,
        "stored_format": transport["stored_format"],
        **({"object": meta} if meta else {}),
    }
    if not verdict.ok and verdict.reason.startswith(RETRY_REASONS):
        entry["retry"] = True  # not in the cursor: offered again, and judged again once its bytes change
    if verdict.ok:
        entry.update(facts or {})
    else:
        # Quarantine first, ledger second: a crash in between leaves a batch that is simply judged again.
        base = f"{QUARANTINE}{ref.batch_id}/"
        if transport["stored_format"] != "none":  # an object that was never read has no copy
            store.put(base + ("batch.sealed" if transport["stored_format"] != "parquet" else "batch.parquet"), data)
        store.put(base + "validation.json", json.dumps(verdict.result, indent=2, default=str).encode())
        store.put(base + "reason.txt", (verdict.reason + "\n").encode())
        entry["quarantine"] = base
    if put_json(store, ledger_key(ref.batch_id), entry, if_absent=True):
        return entry, True
    existing = get_json(store, ledger_key(ref.batch_id))
    if existing.get("retry") and existing.get("sha256") != entry["sha256"]:
        # the object was incomplete when judged (still being copied in) and has changed since: this verdict replaces it
        put_json(store, ledger_key(ref.batch_id), {**entry, "rejudged": existing.get("processed_at")})
        return entry, True
    return existing, False


def open_batch(data: bytes, keyring: dict[str, bytes]) -> tuple[bytes, dict]:
    """(parquet bytes, transport facts) of a stored batch: a sealed one is opened in memory with a
    key of `keyring` (raises `tandem.privacy.sealing.EnvelopeError`), a plain one is as it is."""
    if not sealing.is_sealed(data):
        return data, {"stored_format": "parquet", "aead": "none", "key_id": "none"}
    plain, header = sealing.open_sealed(data, keyring)
    return plain, {"stored_format": sealing.STORED_FORMAT, "aead": header["alg"], "key_id": header["key_id"]}


def refused(reason: str, batch_id: str, rows: int = 0) -> BatchVerdict:
    return BatchVerdict(False, reason, {"success": False, "batch_id": batch_id, "error": reason.split(":")[0]}, rows)


def judge(data: bytes, batch_id: str, keyring: dict[str, bytes], task: Task, suites_dir: Path | None, limits: Limits,
          revoked: frozenset[str] = frozenset()) -> tuple[BatchVerdict, dict]:
    """The per-batch judge, the bulk pass's fallback (`tandem.data.bulk_ingest`) for a batch it cannot
    take or that failed it: (verdict, transport facts) of one batch of `task` on its own, for its exact
    reason and GX result. Admission (limits, identity, the reference set) is the chunk's, after this,
    for every batch alike. Any exception while judging quarantines this batch with its type as the
    reason; it never stops the run. `revoked`: sha256 of withdrawn batches."""
    try:
        return _judge(data, batch_id, keyring, task, suites_dir, limits, revoked)
    except Exception as exc:  # a bug or a hostile file the judges did not foresee: this batch only
        why = unforeseen(exc, data)
        verdict = BatchVerdict(False, f"could not be judged: {why}", {"success": False, "error": "could not be judged",
                                                                      "exception": why}, 0)
        return verdict, {"stored_format": sealing.STORED_FORMAT if sealing.is_sealed(data) else "parquet"}


def unforeseen(exc: Exception, data: bytes) -> str:
    """An unforeseen error while judging a batch, in one line: its type, and its text unless the batch is
    sealed (a sealed batch's error text might quote its plaintext)."""
    sealed = sealing.is_sealed(data)
    return type(exc).__name__ + ("" if sealed or not str(exc) else f": {str(exc).splitlines()[0][:200]}")


def _judge(data: bytes, batch_id: str, keyring: dict[str, bytes], task: Task, suites_dir: Path | None, limits: Limits,
           revoked: frozenset[str]) -> tuple[BatchVerdict, dict]:
    stored = sealing.STORED_FORMAT if sealing.is_sealed(data) else "parquet"
    if revoked and identity.revoked_copy(sha256_hex(data), revoked):
        return refused(identity.revoked_copy(sha256_hex(data), revoked), batch_id), {"stored_format": stored}
    if len(data) > limits.max_batch_bytes:  # before opening or parsing anything
        return refused(batch_limits.check_file(data, limits), batch_id), {"stored_format": stored}
    try:
        plain, transport = open_batch(data, keyring)
    except sealing.EnvelopeError as exc:
        reason = f"sealed batch cannot be opened: {exc}"
        return (BatchVerdict(False, reason, {"success": False, "batch_id": batch_id, "error": "sealed batch cannot be opened",
                                             "exception": str(exc)}, 0),
                {"stored_format": sealing.STORED_FORMAT})
    breach = batch_limits.check_file(plain, limits)
    if breach:
        return refused(breach, batch_id), transport
    return validate_batch(plain, batch_id, task, transport=transport, suites_dir=suites_dir), transport


def admission_breach(rows: pa.Table, days: dict[str, int], data: bytes, meta: dict, foreign: str | None,
                     limits: Limits, usage: Usage, reference_windows: ReferenceKeys | None,
                     revoked: frozenset[str] = frozenset()) -> str | None:
    """Why a batch that passed validation may still not enter, or None: one decision for every batch,
    however it was validated. `rows`: its validated rows; `days`: its `pseudonym_days`; `foreign`:
    `identity.foreign_window_ids`' word on it (looked up for a whole chunk at once)."""
    # the rows themselves only to compare with the reference set's windows, when there is one
    frame = rows.select(batch_limits.admission_columns(reference_windows)).to_pandas() if reference_windows else None
    return ((revoked and identity.revoked_copy(sha256_hex(data), revoked))
            or identity.pseudonyms_breach(days)
            or identity.text_shape_breach(rows)
            or identity.skew_breach(identity.max_captured(rows), uploaded_at(meta), limits.max_clock_skew_seconds)
            or foreign
            or batch_limits.check_admission(days, frame, usage, limits, reference_windows))
