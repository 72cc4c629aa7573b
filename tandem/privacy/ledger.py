"""The device's privacy ledger: the epsilon each user has spent on windows shared under the DP form.

Kept on the device (``TANDEM_HOME/devices/<user>/privacy_ledger.json``), never uploaded. Every
shared window is one release of the user's data, charged once per (window, policy fingerprint):
re-sharing a window under the same policy releases the identical noised values, which costs
nothing more. A window that would take the user's composed epsilon past the policy's budget is not
shared, and neither is any later one.

Composition (the accountant): a window is a Laplace release of its features (pure epsilon-DP) or a
Gaussian one (rho-zCDP), plus randomized response on its label (pure epsilon-DP). The user's total,
at the policy's delta, is the smaller of two valid bounds:

- basic composition: sum of the pure epsilons, plus the Gaussian releases' zCDP converted once;
- zCDP composition: a pure epsilon-DP release is (epsilon^2 / 2)-zCDP (Bun & Steinke 2016,
  Prop. 1.4), rho adds up, and rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP
  (Prop. 1.3).

Written here rather than with Google's dp-accounting: dp-accounting 0.6.0 requires attrs<24, which
conflicts with the attrs>=25.4 that cattrs (a coremltools dependency) needs in this environment.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tandem.privacy.policy import window_epsilon

LEDGER_FILE = "privacy_ledger.json"


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    if rho <= 0:
        return 0.0
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def compose(charges: list[dict], delta: float) -> float:
    """(epsilon at `delta`) of the composition of the charged windows' releases."""
    pure, pure_sq, rho = 0.0, 0.0, 0.0
    for charge in charges:
        for event in (charge["features"], charge["labels"]):
            if event["mechanism"] == "gaussian":
                rho += event["rho"]
            else:
                pure += event["epsilon"]
                pure_sq += event["epsilon"] ** 2
    basic = pure + zcdp_to_epsilon(rho, delta)
    zcdp = zcdp_to_epsilon(pure_sq / 2 + rho, delta)
    return min(basic, zcdp)


@dataclass
class PrivacyLedger:
    user: str  # the device's own user id: the ledger never leaves the device
    charges: list[dict] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def load(cls, devices_dir: Path, user: str) -> "PrivacyLedger":
        path = Path(devices_dir) / user / LEDGER_FILE
        if path.exists():
            d = json.loads(path.read_text())
            return cls(user, d.get("charges", []), path)
        return cls(user, [], path)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"user": self.user, "charges": self.charges}, f, indent=1)
        os.replace(tmp, self.path)

    def charged(self, fingerprint: str) -> set[str]:
        return {c["window"] for c in self.charges if c["fingerprint"] == fingerprint}

    def spent(self, delta: float) -> float:
        return compose(self.charges, delta)

    def affordable(self, policy, window_ids: list[str]) -> list[str]:
        """The windows of `window_ids` the user can share under `policy` within its budget: those
        already charged under this policy (free), and the longest prefix of the others that fits."""
        fp, done = policy.fingerprint(), self.charged(policy.fingerprint())
        cost = window_epsilon(policy)
        new = [w for w in window_ids if w not in done]

        def fits(n: int) -> bool:
            extra = [{"window": w, "fingerprint": fp, **cost} for w in new[:n]]
            return compose(self.charges + extra, policy.delta) <= policy.user_budget_epsilon + 1e-12

        lo, hi = 0, len(new)  # binary search: epsilon grows with every window
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

    def charge(self, policy, window_ids: list[str]) -> int:
        """Record the windows as released under `policy` (once each). Returns how many were new."""
        fp, done = policy.fingerprint(), self.charged(policy.fingerprint())
        cost = window_epsilon(policy)
        new = [w for w in dict.fromkeys(window_ids) if w not in done]
        self.charges += [{"window": w, "fingerprint": fp, **cost} for w in new]
        return len(new)

    def summary(self, delta: float, budget: float | None = None) -> dict:
        return {"windows": len(self.charges), "epsilon": self.spent(delta), "delta": delta, "budget": budget}
