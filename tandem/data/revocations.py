"""Withdrawing accepted data (a poisoned batch, a pseudonym's rows), and erasing it.

*Withdrawn* means left out of every later snapshot: a create-only record ``ledger/revocations/<id>.json``;
nothing already written changes (releases are immutable, the rows stay in the table's versions and the
objects in ``incoming/``), but every later snapshot leaves the rows out, its id changes with the
revocations (so the next run trains again), and its manifest says what was withdrawn. Revoking a
batch withdraws its byte-identical copies too (same sha256 in the ledger, and any later upload of the
same bytes is quarantined at ingest).

*Erased* (`erase`) means gone from the store: the withdrawal first, then the table rewritten without
the rows and every older table file vacuumed (no time travel brings them back), the landing-zone
objects and quarantine copies deleted, the ledger entries' object keys redacted, and an erasure
record ``ledger/erasures/<id>.json`` that names no pseudonym (a sha256 of it, batch ids, counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath

import pandas as pd
import pyarrow.compute as pc

from tandem.data import table as accepted
from tandem.data.store import NotFound, Store, get_json, put_json, sha256_hex
from tandem.data.store_keys import ERASURES, INCOMING, LEDGER, QUARANTINE, REVOCATIONS

PSEUDONYM = re.compile(r"[0-9a-f]{64}")
PSEUDONYM_PREFIX = re.compile(r"[0-9a-f]{16,63}")  # the landing zone's device folders: the first 16


class RevocationError(ValueError):
    pass


@dataclass
class Revocations:
    records: list[dict] = field(default_factory=list)

    @property
    def batches(self) -> set[str]:
        """The revoked batches and their byte-identical copies known when they were revoked."""
        return {b for r in self.records if r["kind"] == "batch" for b in [r["value"], *r.get("copies", [])]}

    @property
    def digests(self) -> frozenset[str]:
        """sha256 of every revoked batch's bytes: a later upload of the same bytes is quarantined."""
        return frozenset(r["sha256"] for r in self.records if r["kind"] == "batch" and r.get("sha256"))

    @property
    def pseudonyms(self) -> set[str]:
        return {r["value"] for r in self.records if r["kind"] == "pseudonym"}

    @property
    def ids(self) -> list[str]:
        return sorted(r["id"] for r in self.records)

    def filter(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The rows not withdrawn, and how many were."""
        if not self.pseudonyms:
            return frame, 0
        keep = ~frame["pseudonym"].isin(self.pseudonyms)
        return frame[keep], int((~keep).sum())

    def summary(self) -> list[dict]:
        """What a snapshot and a release manifest say was withdrawn (pseudonyms shortened)."""
        return [{"id": r["id"], "kind": r["kind"], "what": r["value"] if r["kind"] == "batch" else r["value"][:12] + "…",
                 "reason": r["reason"], "revoked_at": r["revoked_at"],
                 **({"copies": len(r["copies"])} if r.get("copies") else {})}
                for r in sorted(self.records, key=lambda r: r["id"])]


def table_pseudonyms(store: Store) -> list[str]:
    """The distinct pseudonyms in the table's latest version."""
    dt = accepted.open_table(store)
    if dt is None:
        return []
    return sorted(p for p in pc.unique(dt.to_pyarrow_table(columns=["pseudonym"]).column("pseudonym")).to_pylist() if p)


def resolve_pseudonym(store: Store, value: str) -> str:
    """The full pseudonym for `value`: itself (64 hex), or the one pseudonym in the table that starts
    with it (the 16-character prefix the landing zone's folders show). Refuses a raw id, no match and
    an ambiguous prefix."""
    value = value.strip()
    if PSEUDONYM.fullmatch(value):
        return value
    if not PSEUDONYM_PREFIX.fullmatch(value):
        raise RevocationError(f"{value[:40]!r} is not a pseudonym (64 lowercase hex, or its first 16 or more as in "
                              f"incoming/<day>/<prefix>/); pass the pseudonym, never a raw id")
    matches = [p for p in table_pseudonyms(store) if p.startswith(value)]
    if not matches:
        raise RevocationError(f"no accepted rows under a pseudonym starting with {value}; check the prefix "
                              f"(incoming/<day>/<prefix>/) or pass the whole pseudonym")
    if len(matches) > 1:
        raise RevocationError(f"{value} is ambiguous: {len(matches)} pseudonyms start with it; give more characters")
    return matches[0]


def _ledger(store: Store) -> list[dict]:
    return [get_json(store, k) for k in store.list(LEDGER) if k.endswith(".json")]


def revoke(store: Store, kind: str, value: str, reason: str, known_batches: set[str] | None = None) -> dict:
    """Record a withdrawal once; the same request again returns the first record. A pseudonym may be
    given by its landing-zone prefix (resolved against the table); a batch's record names its
    byte-identical copies in the ledger."""
    if kind not in ("batch", "pseudonym"):
        raise RevocationError(f"cannot revoke a {kind!r}: a batch or a pseudonym")
    if not reason.strip():
        raise RevocationError("a revocation needs a reason (--reason), e.g. 'erasure request' or 'poisoned batch'")
    extra: dict = {}
    if kind == "pseudonym":
        value = resolve_pseudonym(store, value)
    else:
        if known_batches is not None and value not in known_batches:
            raise RevocationError(f"no accepted batch {value[:40]!r} in the ledger (see ledger/batches/)")
        try:
            digest = get_json(store, f"{LEDGER}{value}.json").get("sha256")
        except NotFound:
            digest = None
        if digest:
            copies = sorted(e["batch_id"] for e in _ledger(store)
                            if e.get("sha256") == digest and e["batch_id"] != value and e.get("outcome") == "accepted")
            extra = {"sha256": digest, "copies": copies}
    rid = sha256_hex(f"{kind}:{value}".encode())[:16]
    record = {"id": rid, "kind": kind, "value": value, "reason": reason.strip()[:500],
              "revoked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
    key = f"{REVOCATIONS}{rid}.json"
    if not put_json(store, key, record, if_absent=True):
        return get_json(store, key)
    return record


def load(store: Store) -> Revocations:
    return Revocations([get_json(store, k) for k in store.list(REVOCATIONS) if k.endswith(".json")])


def _batches_of(store: Store, pseudonym: str) -> list[str]:
    dt = accepted.open_table(store)
    if dt is None:
        return []
    rows = dt.to_pyarrow_table(columns=["pseudonym", accepted.BATCH_ID])
    rows = rows.filter(pc.equal(rows["pseudonym"], pseudonym))
    return sorted(pc.unique(rows[accepted.BATCH_ID]).to_pylist())


def erase(store: Store, kind: str, value: str, reason: str, known_batches: set[str] | None = None) -> dict:
    """Withdraw, then erase: the table rewritten without the rows and vacuumed, the landing-zone objects
    and quarantine copies deleted, ledger keys redacted; returns the erasure record (no pseudonym in it).
    Safe to run again after a crash: each step finds what is left."""
    record = revoke(store, kind, value, reason, known_batches)
    if kind == "pseudonym":
        batches = _batches_of(store, record["value"])
        folder = record["value"][:16]
    else:
        batches = sorted({record["value"], *record.get("copies", [])})
        folder = None
    table_numbers = accepted.erase_batches(store, batches)
    entries = {e["batch_id"]: e for e in _ledger(store)}
    doomed = {b for b in batches if b in entries}
    if folder is not None:  # every object the device uploaded, quarantined ones included
        doomed |= {b for b, e in entries.items() if PurePosixPath(e.get("key", "")).parent.name == folder}
    keys = {entries[b]["key"] for b in doomed if entries[b].get("key", "").startswith(INCOMING)}
    if folder is not None:
        keys |= {k for k in store.list(INCOMING) if PurePosixPath(k).parent.name == folder}
    for key in sorted(keys):
        store.delete(key)
    for batch_id in sorted(doomed):
        for key in store.list(f"{QUARANTINE}{batch_id}/"):
            store.delete(key)
        entry = entries[batch_id]
        if not entry.get("erased"):
            put_json(store, f"{LEDGER}{batch_id}.json", {**entry, "key": f"erased:{batch_id}", "erased": record["id"]})
    erasure = {"id": record["id"], "kind": kind,
               "what": record["value"] if kind == "batch" else "sha256:" + sha256_hex(record["value"].encode()),
               "reason": record["reason"], "batches": sorted(batches), "rows_deleted": table_numbers["rows_deleted"],
               "table_files_vacuumed": table_numbers["files_vacuumed"], "table_version": table_numbers["table_version"],
               "landing_objects_deleted": len(keys), "ledger_entries_redacted": len(doomed),
               "erased_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    put_json(store, f"{ERASURES}{record['id']}-{erasure['erased_at'].replace(':', '')}.json", erasure)
    return erasure
