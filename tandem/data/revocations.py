"""Withdrawing accepted data: an erasure request (every row of a pseudonym) or a poisoned batch.

A revocation is a create-only record ``ledger/revocations/<id>.json``; nothing already written is
changed (releases are immutable), but every later snapshot leaves the withdrawn rows out, its id
changes with the revocations (so the next run trains again), and its manifest says what was
withdrawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from tandem.data.store import Store, get_json, put_json, sha256_hex

REVOCATIONS = "ledger/revocations/"
PSEUDONYM = re.compile(r"[0-9a-f]{16,128}")


class RevocationError(ValueError):
    pass


@dataclass
class Revocations:
    records: list[dict] = field(default_factory=list)

    @property
    def batches(self) -> set[str]:
        return {r["value"] for r in self.records if r["kind"] == "batch"}

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
                 "reason": r["reason"], "revoked_at": r["revoked_at"]} for r in sorted(self.records, key=lambda r: r["id"])]


def revoke(store: Store, kind: str, value: str, reason: str, known_batches: set[str] | None = None) -> dict:
    """Record a withdrawal once; the same request again returns the first record."""
    if kind not in ("batch", "pseudonym"):
        raise RevocationError(f"cannot revoke a {kind!r}: a batch or a pseudonym")
    if not reason.strip():
        raise RevocationError("a revocation needs a reason (--reason), e.g. 'erasure request' or 'poisoned batch'")
    if kind == "pseudonym" and not PSEUDONYM.fullmatch(value):
        raise RevocationError(f"{value[:40]!r} is not a pseudonym (lowercase hex); pass the pseudonym, never a raw id")
    if kind == "batch" and known_batches is not None and value not in known_batches:
        raise RevocationError(f"no accepted batch {value[:40]!r} in the ledger (see ledger/batches/)")
    rid = sha256_hex(f"{kind}:{value}".encode())[:16]
    record = {"id": rid, "kind": kind, "value": value, "reason": reason.strip()[:500],
              "revoked_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    key = f"{REVOCATIONS}{rid}.json"
    if not put_json(store, key, record, if_absent=True):
        return get_json(store, key)
    return record


def load(store: Store) -> Revocations:
    return Revocations([get_json(store, k) for k in store.list(REVOCATIONS) if k.endswith(".json")])
