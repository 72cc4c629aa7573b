"""What a release states about privacy: the per-user guarantee of the data it was trained on (from
the snapshot's rows and the policies their batches recorded, composed per pseudonym with
`tandem.privacy.dp_accountant`), the model's own guarantee (user-level DP-SGD, or none), and the measured
membership-inference AUC."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tandem.privacy import dp_accountant
from tandem.privacy.policy import load_policy


def data_guarantee(frame: pd.DataFrame, policies: dict[str, dict], classes: int) -> dict:
    """Per-user (epsilon, delta) of the snapshot's rows: each pseudonym's distinct windows, each
    charged its policy's per-window events (randomized response over the task's `classes`). A user with any window shared without the dp form has
    no formal guarantee (epsilon None)."""
    loaded = {name: load_policy(public) for name, public in policies.items()}
    for name in frame["policy"].unique():
        loaded.setdefault(name, load_policy(name))
    delta = max((p.delta for p in loaded.values() if p.charged), default=None)
    per_user = []
    for _, rows in frame.drop_duplicates("window_id").groupby("pseudonym"):
        counts = rows["policy"].value_counts()
        if any(not loaded[name].charged for name in counts.index):
            per_user.append(math.inf)
            continue
        counted = [(e, int(n)) for name, n in counts.items() for e in loaded[name].window_events(classes)]
        per_user.append(dp_accountant.compose(counted, delta))
    finite = [e for e in per_user if math.isfinite(e)]
    without = len(per_user) - len(finite)
    out = {"unit": "user: all of a pseudonym's windows in this snapshot, composed", "users": len(per_user),
           "users_without_dp": without, "delta": delta,
           "epsilon_max": None if without or not finite else float(max(finite)),
           "epsilon_median": float(np.median(finite)) if finite else None,
           "accountant": "dp-accounting PLD (pessimistic)"}
    if without:
        out["statement"] = (f"no formal DP guarantee for the training data: {without} of {len(per_user)} users "
                            "shared windows without the dp form")
    else:
        out["statement"] = (f"every user in the training data is protected by local DP at epsilon <= "
                            f"{out['epsilon_max']:.2f}, delta = {delta:g} over all their windows in it")
    return out


def model_guarantee(result) -> dict:
    privacy = getattr(result, "privacy", None)
    if privacy:
        return {**privacy, "statement": f"the model is ({privacy['epsilon']:.2f}, {privacy['delta']:g})-DP at the "
                                        "level of users (DP-SGD)"}
    return {"epsilon": None, "statement": "no central DP: the model was trained without DP-SGD"}
