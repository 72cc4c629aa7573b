"""The update gate: personalized on the device with the app's update policy, users are not made worse."""

from __future__ import annotations

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy
from tandem.release.gates.inputs import GateInputs
from tandem.task.kinds import Kind
from tandem.training.personalization import personalize

NAME = "update"


def personalization_summary(kind: Kind, device: DeviceModel, users, labelled_per_user: int,
                            policy: UpdatePolicy) -> dict:
    """Personalize a copy per user on a few labelled earlier windows with the app's update policy,
    score on their later windows."""
    # keyed by position: raw user ids never go into a manifest or MLflow
    results = {f"eval-{i:02d}": personalize(device, u, labelled_per_user, policy=policy) for i, u in enumerate(users)}
    before = float(np.mean([r.accuracy_before for r in results.values()]))
    after = float(np.mean([r.accuracy_after for r in results.values()]))
    # the score is accuracy, or minus the MAE for a regressor: reported in the kind's headline (MAE there)
    sign = 1.0 if kind.higher_is_better else -1.0
    return {
        "users": len(results),
        f"{kind.headline}_before": sign * before, f"{kind.headline}_after": sign * after,
        "gain": after - before,
        "loss_fell_for": int(sum(r.loss_after < r.loss_before for r in results.values())),
        "updated": int(sum(not np.isnan(r.loss_before) for r in results.values())),
        "helped": int(sum(r.gain > 0 for r in results.values())),
        "harmed": int(sum(r.gain < 0 for r in results.values())),
        "per_user": {uid: {"before": abs(r.accuracy_before), "after": abs(r.accuracy_after), "loss_before": r.loss_before,
                           "loss_after": r.loss_after} for uid, r in results.items()},
    }


def update_gate(kind: Kind, device: DeviceModel, users, labelled_per_user: int, max_drop: float = 0.0,
                policy: UpdatePolicy | None = None) -> dict:
    summary = personalization_summary(kind, device, users, labelled_per_user, policy or UpdatePolicy())
    # The policy keeps the base for a user whose held-out labels no epoch improved (loss NaN: no task
    # B ran); every user it did update must see the training loss fall. The mean score may not
    # drop by more than `max_drop` (at the ceiling, one window of a few hundred is noise, not harm).
    summary["max_drop"] = max_drop
    summary["mini_batch_size"] = (policy or UpdatePolicy()).mini_batch_size
    summary["passed"] = summary["loss_fell_for"] == summary["updated"] and summary["gain"] >= -max_drop
    return summary


def judge(g: GateInputs, so_far: dict) -> dict:
    t = g.thresholds
    return update_gate(g.kind, g.device, g.gated_users, t.personalization_labels, t.max_update_accuracy_drop, g.policy)


def reason(summary: dict, g: GateInputs) -> str:
    h, label = g.kind.headline, g.kind.headline_label
    return (f"update: loss fell for {summary['loss_fell_for']} of {summary['updated']} updated users, "
            f"mean {label} {summary[f'{h}_before']:.3f} -> {summary[f'{h}_after']:.3f}")
