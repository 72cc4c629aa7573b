"""The update gate: personalized on the device with the app's update policy, users are not made worse."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

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
        "updated": int(sum(not np.isnan(r.loss_before) for r in results.values())),  # fine-tuned (task B ran)
        "knn_chosen": int(sum(r.method == "knn" for r in results.values())),  # given the k-NN personal model
        "helped": int(sum(r.gain > 0 for r in results.values())),
        "harmed": int(sum(r.gain < 0 for r in results.values())),
        "windows_better": int(sum(r.windows_better for r in results.values())),
        "windows_worse": int(sum(r.windows_worse for r in results.values())),
        "per_user": {uid: {"before": abs(r.accuracy_before), "after": abs(r.accuracy_after), "loss_before": r.loss_before,
                           "loss_after": r.loss_after, "windows": r.n_test, "windows_better": r.windows_better,
                           "windows_worse": r.windows_worse, "method": r.method} for uid, r in results.items()},
    }


def harm_p_value(windows_worse: int, windows_better: int) -> float:
    """One-sided sign test: how likely this many of the changed held-out windows went worse if the
    update were as likely to fix a window as to break one (1.0 when none changed)."""
    changed = windows_worse + windows_better
    return float(binomtest(windows_worse, changed, 0.5, alternative="greater").pvalue) if changed else 1.0


def update_gate(kind: Kind, device: DeviceModel, users, labelled_per_user: int, max_drop: float = 0.0,
                policy: UpdatePolicy | None = None, harm_alpha: float = 0.05) -> dict:
    summary = personalization_summary(kind, device, users, labelled_per_user, policy or UpdatePolicy())
    # The policy keeps the base for a user whose held-out labels no epoch improved (loss NaN: no task
    # B ran); every user it did update must see the training loss fall. The mean score may not drop
    # by more than `max_drop` with evidence behind it: on a few evaluation users one window is
    # points of accuracy, so a classifier's drop blocks only when the windows the update broke
    # outnumber those it fixed beyond chance (sign test, p < `harm_alpha`); a broken update breaks
    # many and fixes none. A regressor's MAE is not counted in windows: any rise beyond `max_drop` blocks.
    summary["max_drop"] = max_drop
    summary["harm_alpha"] = harm_alpha
    summary["harm_p_value"] = (harm_p_value(summary["windows_worse"], summary["windows_better"])
                               if kind.higher_is_better else None)
    summary["mini_batch_size"] = (policy or UpdatePolicy()).mini_batch_size
    p = summary["harm_p_value"]
    dropped = summary["gain"] < -max_drop and (p is None or p < harm_alpha)
    summary["passed"] = summary["loss_fell_for"] == summary["updated"] and not dropped
    return summary


def judge(g: GateInputs, so_far: dict) -> dict:
    t = g.thresholds
    return update_gate(g.kind, g.device, g.gated_users, t.personalization_labels, t.max_update_accuracy_drop, g.policy,
                       t.update_harm_alpha)


def reason(summary: dict, g: GateInputs) -> str:
    h, label = g.kind.headline, g.kind.headline_label
    line = (f"update: loss fell for {summary['loss_fell_for']} of {summary['updated']} updated users, "
            f"mean {label} {summary[f'{h}_before']:.3f} -> {summary[f'{h}_after']:.3f}")
    if summary["harm_p_value"] is None:
        return line
    return (f"{line}, held-out windows worse {summary['windows_worse']} / better {summary['windows_better']} "
            f"(sign test p={summary['harm_p_value']:.3g})")
