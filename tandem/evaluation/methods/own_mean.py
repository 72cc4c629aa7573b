"""The user's own mean: predict the mean of its labelled targets (what a device can do with no model;
a regressor's baseline)."""

from __future__ import annotations

import numpy as np

from tandem.evaluation.methods.base import Fitted, Fold, Personal, evaluate
from tandem.evaluation.protocol_data import Side


class OwnMean:
    rival = False

    def fit(self, fold: Fold) -> None:
        return None

    def personalize(self, fold: Fold, fitted: Fitted | None, side: Side, labelled: np.ndarray) -> Personal:
        mean = float(np.mean(side.y[labelled]))
        return Personal(lambda X: np.full(len(X), mean))

    def evaluate(self, fold: Fold, predict, side: Side) -> dict[str, float]:
        return evaluate(fold, predict, side)
