"""The device's privacy ledger: every release a user has made under a DP form, composed per user.

Kept on the device (``TANDEM_HOME/devices/<user>/privacy_ledger.json``), never uploaded. Every
shared window is one release of the user's data, charged once per (window, policy fingerprint):
re-sharing a window under the same policy releases the identical noised values, which costs
nothing more. The user's guarantee is the composition of *all* charged releases
(`tandem.privacy.dp_accountant`, dp-accounting PLD) at the policy's delta; a window that would take it past
the policy's per-user budget is not shared, and neither is any later one.

Format v2: ``{"format": "tandem-privacy-ledger/v2", "user", "charges": [{"window", "fingerprint",
"events": [...]}]}``. Ledgers of v1 (no ``format``; ``features``/``labels`` per charge) are migrated
on load, event by event (v1's Laplace and randomized response are pure-epsilon releases, its
Gaussian a rho); anything else is refused with `LedgerError`, so a device never shares on a history
it cannot read.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tandem.privacy.dp_accountant import (
    AccountingError,
    basic_bound,
    compose,
    count_events,
    normalize,
)

LEDGER_FILE = "privacy_ledger.json"
FORMAT = "tandem-privacy-ledger/v2"


class LedgerError(RuntimeError):
    """The ledger cannot be read: the device must not share until it is sorted out."""


def _migrate_v1(charges: list, path) -> list[dict]:
    out = []
    for c in charges:
        try:
            events = [normalize(c["features"]), normalize(c["labels"])]
            out.append({"window": str(c["window"]), "fingerprint": str(c["fingerprint"]), "events": events})
        except (KeyError, TypeError, AccountingError) as e:
            raise LedgerError(f"privacy ledger {path}: a v1 charge cannot be migrated ({e}); refusing to share") from None
    return out


def read_charges(path: Path) -> tuple[list[dict], str | None]:
    """(charges in v2 form, the format migrated from or None)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LedgerError(f"privacy ledger {path} is unreadable ({type(e).__name__}); refusing to share") from None
    if not isinstance(d, dict) or not isinstance(d.get("charges"), list):
        raise LedgerError(f"privacy ledger {path} has no list of charges; refusing to share")
    fmt = d.get("format")
    if fmt is None:
        return _migrate_v1(d["charges"], path), "v1"
    if fmt != FORMAT:
        raise LedgerError(f"privacy ledger {path} is in format {fmt!r}, this device reads {FORMAT!r}; refusing to share")
    try:
        for c in d["charges"]:
            [normalize(e) for e in c["events"]]
    except (KeyError, TypeError, AccountingError) as e:
        raise LedgerError(f"privacy ledger {path}: bad charge ({e}); refusing to share") from None
    return d["charges"], None


@dataclass
class PrivacyLedger:
    user: str  # the device's own user id: the ledger never leaves the device
    charges: list[dict] = field(default_factory=list)
    path: Path | None = None
    migrated_from: str | None = None

    @classmethod
    def load(cls, devices_dir: Path, user: str) -> PrivacyLedger:
        path = Path(devices_dir) / user / LEDGER_FILE
        if path.exists():
            charges, migrated = read_charges(path)
            return cls(user, charges, path, migrated)
        return cls(user, [], path)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "user": self.user, "charges": self.charges}, f, indent=1)
        os.replace(tmp, self.path)

    def charged(self, fingerprint: str) -> set[str]:
        return {c["window"] for c in self.charges if c["fingerprint"] == fingerprint}

    def counted(self, extra: list[list[dict]] = ()) -> list[tuple[dict, int]]:
        return count_events([c["events"] for c in self.charges] + list(extra))

    def spent(self, delta: float) -> float:
        """The user's epsilon at `delta` over everything released so far."""
        return compose(self.counted(), delta)

    def affordable(self, policy, window_ids: list[str], classes: int) -> list[str]:
        """The windows of `window_ids` the user can share under `policy` within its budget (for a task of
        `classes` classes): those already charged under this policy (free), and the longest prefix of
        the others that fits."""
        done = self.charged(policy.fingerprint())
        cost = policy.window_events(classes)
        new = [w for w in window_ids if w not in done]
        budget = policy.user_budget_epsilon

        def fits(n: int) -> bool:
            counted = self.counted([cost] * n)
            if basic_bound(counted, policy.delta) <= budget:  # the loose bound already fits: no PLD needed
                return True
            return compose(counted, policy.delta) <= budget + 1e-9

        lo, hi = 0, len(new)  # binary search: epsilon grows with every window
        if fits(hi):
            lo = hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        allowed = set(new[:lo])
        # windows already charged are shared again as they were (same values, no new cost), so the
        # batches come out the same; of the new ones, the affordable prefix
        return [w for w in window_ids if w in done or w in allowed]

    def charge(self, policy, window_ids: list[str], classes: int) -> int:
        """Record the windows as released under `policy` for a task of `classes` classes (once each).
        Returns how many were new."""
        fp, done = policy.fingerprint(), self.charged(policy.fingerprint())
        cost = policy.window_events(classes)
        new = [w for w in dict.fromkeys(window_ids) if w not in done]
        self.charges += [{"window": w, "fingerprint": fp, "events": cost} for w in new]
        return len(new)

    def summary(self, delta: float, budget: float | None = None) -> dict:
        return {"windows": len(self.charges), "epsilon": self.spent(delta), "delta": delta, "budget": budget,
                "unit": "user (all releases composed)"}
