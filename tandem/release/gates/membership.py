"""The membership gate: loss-threshold membership inference, training rows against the never-sharing
users' windows. AUC 0.5 is a coin; a release is blocked above `max_membership_auc` (None: measured only)."""

from __future__ import annotations

import numpy as np

from tandem.contract import features
from tandem.release.gates.inputs import GateInputs
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.membership import auc

NAME = "membership"
MEMBERSHIP_ROWS = 2000  # members sampled from the training rows (and as many non-member windows)


def membership_gate(task: Task, torch_model, train_frame, users, threshold: float | None, seed: int = 0) -> dict:
    if train_frame is None or not len(train_frame):
        return {"passed": True, "measured": False, "threshold": threshold}
    kind = kind_of(task)
    rng = np.random.default_rng(seed)
    Xm = train_frame[list(features.of(task).feature_names)].to_numpy(np.float64)
    ym = kind.targets(train_frame["label"].to_numpy())
    Xn = np.concatenate([u.features for u in users])
    yn = np.concatenate([u.y for u in users])
    n = min(MEMBERSHIP_ROWS, len(ym), len(yn))
    im, inn = rng.choice(len(ym), n, replace=False), rng.choice(len(yn), n, replace=False)
    loss = lambda X, y: kind.row_loss(model.outputs(torch_model, X), y)  # noqa: E731  (a lower one says "member")
    score = auc(-loss(Xm[im], ym[im]), -loss(Xn[inn], yn[inn]))
    return {"passed": threshold is None or score <= threshold, "measured": True, "loss_auc": score, "rows": int(n),
            "threshold": threshold, "attack": "loss threshold; members: training rows, non-members: evaluation users"}


def judge(g: GateInputs, so_far: dict) -> dict:
    return membership_gate(g.task, g.result.model, g.train_frame, g.users, g.thresholds.max_membership_auc)


def reason(summary: dict, g: GateInputs) -> str:
    return f"membership: loss-threshold AUC {summary['loss_auc']:.3f} is above the limit {summary['threshold']:.3f}"
