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
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from tandem.data import limits as batch_limits
from tandem.data.limits import Limits, Usage
from tandem.data.store import NotFound, NotRegular, Store, get_json, put_json, sha256_hex
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
    """A batch's id is a digest of its whole key: unique per object (two devices may both upload
    ``x.parquet``), and short whatever the file name (every internal name derives from it)."""
    return BatchRef(sha256_hex(key.encode())[:24], key)


_DIGEST_ID = re.compile(r"[0-9a-f]{24}")


def ledger_key(batch_id: str) -> str:
    return f"{LEDGER}{batch_id}.json"


def discover(store: Store) -> list[BatchRef]:
    """Batches in the landing zone without a ledger entry, in key order."""
    seen = {PurePosixPath(k).name[:-len(".json")] for k in store.list(LEDGER) if k.endswith(".json")}
    # entries from before ids were digests of the key (named by the file stem): seen by their key
    seen |= {batch_ref(get_json(store, ledger_key(i))["key"]).batch_id for i in list(seen) if not _DIGEST_ID.fullmatch(i)}
    return [batch_ref(k) for k in store.list(INCOMING) if k.endswith(BATCH_SUFFIXES) and batch_ref(k).batch_id not in seen]


def ledger_entries(store: Store) -> list[dict]:
    return [get_json(store, k) for k in store.list(LEDGER) if k.endswith(".json")]


def accepted_entries(store: Store) -> list[dict]:
    return [e for e in ledger_entries(store) if e["outcome"] == "accepted"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_batch(store: Store, ref: BatchRef, keyring: dict[str, bytes], run_id: str | None = None,
                  suites_dir: Path | None = None, limits: Limits | None = None, usage: Usage | None = None,
                  holdout: frozenset[str] = frozenset()) -> dict:
    """Validate one batch and record its outcome once. Returns the ledger entry (the existing one
    when another run got there first). `keyring`: the keys sealed batches may be opened with;
    `limits`, `usage` (accepted so far) and `holdout` (digests of evaluation windows): see
    `tandem.data.limits`. Whatever goes wrong with this one object quarantines it; it never stops
    the run."""
    try:
        data = store.get(ref.key)
    except NotFound:
        raise RuntimeError(f"batch {ref.batch_id} vanished from {ref.key}: the landing zone must not lose data") from None
    except NotRegular as exc:  # a symlink, FIFO, device: never read
        data = None
        verdict = BatchVerdict(False, f"refused: {exc}", {"success": False, "error": "not a regular file"}, 0)
        transport = {"stored_format": "none"}
    if data is not None:
        try:
            verdict, transport = _judge(data, ref.batch_id, keyring, suites_dir, limits or Limits(), usage or Usage(), holdout)
        except Exception as exc:  # a bug or a hostile file the judges did not foresee: this batch only
            sealed = sealing.is_sealed(data)  # a sealed batch's error text might quote its plaintext
            why = type(exc).__name__ + ("" if sealed or not str(exc) else f": {str(exc).splitlines()[0][:200]}")
            verdict = BatchVerdict(False, f"could not be judged: {why}", {"success": False, "error": "could not be judged",
                                                                          "exception": why}, 0)
            transport = {"stored_format": sealing.STORED_FORMAT if sealed else "parquet"}
    data = data or b""
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
        entry["pseudonym_days"] = batch_limits.pseudonym_days(verdict.frame)
        entry["policy"] = sorted(verdict.frame["policy"].unique().tolist())
        captured = verdict.frame["captured_at"]
        entry["captured_from"], entry["captured_to"] = captured.min().isoformat(), captured.max().isoformat()
    else:
        # Quarantine first, ledger second: a crash in between leaves a batch that is simply judged again.
        base = f"{QUARANTINE}{ref.batch_id}/"
        if transport["stored_format"] != "none":
            store.put(base + ("batch.sealed" if transport["stored_format"] != "parquet" else "batch.parquet"), data)
        store.put(base + "validation.json", json.dumps(verdict.result, indent=2, default=str).encode())
        store.put(base + "reason.txt", (verdict.reason + "\n").encode())
        entry["quarantine"] = base
    if put_json(store, ledger_key(ref.batch_id), entry, if_absent=True):
        return entry
    return get_json(store, ledger_key(ref.batch_id))


def open_batch(data: bytes, keyring: dict[str, bytes]) -> tuple[bytes, dict]:
    """(parquet bytes, transport facts) of a stored batch: a sealed one is opened in memory with a
    key of `keyring` (raises `tandem.privacy.sealing.EnvelopeError`), a plain one is as it is."""
    if not sealing.is_sealed(data):
        return data, {"stored_format": "parquet", "aead": "none", "key_id": "none"}
    plain, header = sealing.open_sealed(data, keyring)
    return plain, {"stored_format": sealing.STORED_FORMAT, "aead": header["alg"], "key_id": header["key_id"]}


def _refused(reason: str, batch_id: str, rows: int = 0) -> BatchVerdict:
    return BatchVerdict(False, reason, {"success": False, "batch_id": batch_id, "error": reason.split(":")[0]}, rows)


def _judge(data: bytes, batch_id: str, keyring: dict[str, bytes], suites_dir: Path | None, limits: Limits,
           usage: Usage, holdout: frozenset[str]):
    stored = sealing.STORED_FORMAT if sealing.is_sealed(data) else "parquet"
    if len(data) > limits.max_batch_bytes:  # before opening or parsing anything
        return _refused(batch_limits.check_file(data, limits), batch_id), {"stored_format": stored}
    try:
        plain, transport = open_batch(data, keyring)
    except sealing.EnvelopeError as exc:
        reason = f"sealed batch cannot be opened: {exc}"
        return (BatchVerdict(False, reason, {"success": False, "batch_id": batch_id, "error": "sealed batch cannot be opened",
                                             "exception": str(exc)}, 0),
                {"stored_format": sealing.STORED_FORMAT})
    breach = batch_limits.check_file(plain, limits)
    if breach:
        return _refused(breach, batch_id), transport
    verdict = validate_batch(plain, batch_id, transport=transport, suites_dir=suites_dir)
    if verdict.ok:
        breach = batch_limits.check_usage(verdict.frame, usage, limits) or batch_limits.check_holdout(verdict.frame, holdout)
        if breach:
            return _refused(breach, batch_id, verdict.rows), transport
    return verdict, transport
