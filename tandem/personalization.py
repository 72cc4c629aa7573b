"""Personalization as the app does it, simulated with the device runtime: a user labels the first
few windows of each activity, the model updates on them, and is scored on the user's later windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update import update


@dataclass
class Personalized:
    model: DeviceModel
    accuracy_before: float
    accuracy_after: float
    loss_before: float
    loss_after: float
    loss_history: list[float]
    n_train: int
    n_test: int

    @property
    def gain(self) -> float:
        return self.accuracy_after - self.accuracy_before


def first_per_class(labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: the first `per_class` windows of each label in capture order, the rest."""
    labels = np.asarray(labels)
    train = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
    test = np.setdiff1d(np.arange(len(labels)), train)
    return train, test


def personalize(base: DeviceModel, X: np.ndarray, labels: np.ndarray, per_class: int, **overrides) -> Personalized:
    """Update a copy of `base` on the user's first labelled windows; score before and after on the rest."""
    train, test = first_per_class(labels, per_class)
    if len(test) == 0:
        raise ValueError(f"a user with {len(labels)} windows has none left to score after {per_class} per class")
    labels = np.asarray(labels)
    before = float((base.predict(X[test]) == labels[test]).mean())
    result = update(DeviceModel.load(base.to_bytes()), X[train], labels[train], **overrides)
    after = float((result.model.predict(X[test]) == labels[test]).mean())
    return Personalized(result.model, before, after, result.loss_before, result.loss_after, result.history,
                        len(train), len(test))
