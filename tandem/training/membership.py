"""Loss-threshold membership inference (Yeom et al. 2018): was a window in a model's training data?
A lower loss says "member"; AUC 0.5 is a coin. Here, below `tandem.release`, because the release's
membership gate runs it; the audit's other attacks are in `tandem.evaluation.privacy_attacks`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score


def losses(predict_proba: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(predict_proba(X)[np.arange(len(y)), y], 1e-12, 1.0)
    return -np.log(p)


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """AUC of telling members (higher score) from non-members."""
    scores = np.concatenate([members, non_members])
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    return float(roc_auc_score(truth, scores))


def membership_loss_auc(predict_proba, members: tuple[np.ndarray, np.ndarray],
                        non_members: tuple[np.ndarray, np.ndarray]) -> float:
    """Loss-threshold attack: a lower loss says "member"."""
    return auc(-losses(predict_proba, *members), -losses(predict_proba, *non_members))
