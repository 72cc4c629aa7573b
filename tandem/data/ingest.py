"""Ingest: find the batches in the landing zone that no run has processed, judge each once, and
record the outcome in the ledger. Quarantined batches are copied to ``quarantine/<batch>/`` with
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from tandem.data import landing
from tandem.data.store import NotFound, Store, get_json, put_json, sha256_hex
from tandem.data.validation import BatchVerdict, validate_batch
from tandem.privacy import sealing

INCOMING = "incoming/"
LEDGER = "ledger/batches/"
QUARANTINE = "quarantine/"


@dataclass(frozen=True)
class BatchRef:
    batch_id: str
    key: str


BATCH_SUFFIXES = (".parquet", ".sealed")


def batch_ref(key: str) -> BatchRef:
    return BatchRef(PurePosixPath(key).stem, key)


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
    return sorted(refs.values(), key=lambda r: r.key)


def ledger_entries(store: Store) -> list[dict]:
    return [get_json(store, k) for k in store.list(LEDGER) if k.endswith(".json")]


def accepted_entries(store: Store) -> list[dict]:
    return [e for e in ledger_entries(store) if e["outcome"] == "accepted"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_batch(store: Store, ref: BatchRef, keyring: dict[str, bytes], run_id: str | None = None,
                  suites_dir: Path | None = None) -> dict:
    """Validate one batch and record its outcome once. Returns the ledger entry (the existing one
    when another run got there first). `keyring`: the keys sealed batches may be opened with."""
    try:
        data = store.get(ref.key)
    except NotFound:
        raise RuntimeError(f"batch {ref.batch_id} vanished from {ref.key}: the landing zone must not lose data") from None
    verdict, transport = _judge(data, ref.batch_id, keyring, suites_dir)
    facts = None
    if verdict.ok:
        captured = verdict.frame["captured_at"]
        facts = {"policy": sorted(verdict.frame["policy"].unique().tolist()),
                 "captured_from": captured.min().isoformat(), "captured_to": captured.max().isoformat()}
    return record(store, ref, data, verdict, transport, run_id, facts)[0]


def record(store: Store, ref: BatchRef, data: bytes, verdict: BatchVerdict, transport: dict, run_id: str | None,
           facts: dict | None = None) -> tuple[dict, bool]:
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
    }
    if verdict.ok:
        entry.update(facts or {})
    else:
        # Quarantine first, ledger second: a crash in between leaves a batch that is simply judged again.
        base = f"{QUARANTINE}{ref.batch_id}/"
        store.put(base + ("batch.sealed" if transport["stored_format"] != "parquet" else "batch.parquet"), data)
        store.put(base + "validation.json", json.dumps(verdict.result, indent=2, default=str).encode())
        store.put(base + "reason.txt", (verdict.reason + "\n").encode())
        entry["quarantine"] = base
    if put_json(store, ledger_key(ref.batch_id), entry, if_absent=True):
        return entry, True
    return get_json(store, ledger_key(ref.batch_id)), False


def open_batch(data: bytes, keyring: dict[str, bytes]) -> tuple[bytes, dict]:
    """(parquet bytes, transport facts) of a stored batch: a sealed one is opened in memory with a
    key of `keyring` (raises `tandem.privacy.sealing.EnvelopeError`), a plain one is as it is."""
    if not sealing.is_sealed(data):
        return data, {"stored_format": "parquet", "aead": "none", "key_id": "none"}
    plain, header = sealing.open_sealed(data, keyring)
    return plain, {"stored_format": sealing.STORED_FORMAT, "aead": header["alg"], "key_id": header["key_id"]}


def _judge(data: bytes, batch_id: str, keyring: dict[str, bytes], suites_dir: Path | None):
    try:
        plain, transport = open_batch(data, keyring)
    except sealing.EnvelopeError as exc:
        reason = f"sealed batch cannot be opened: {exc}"
        return (BatchVerdict(False, reason, {"success": False, "batch_id": batch_id, "error": "sealed batch cannot be opened",
                                             "exception": str(exc)}, 0),
                {"stored_format": sealing.STORED_FORMAT})
    return validate_batch(plain, batch_id, transport=transport, suites_dir=suites_dir), transport
