"""The interface every evaluation method implements, modelled on Flower's `Strategy`: a method fits
a model for the fold from what the sharing users give (`fit`), a never-sharing user's device
personalizes it on its labelled rows (`personalize`), and the user's held-out rows score it
(`evaluate`, the task kind's metrics). The harness (`tandem.evaluation.protocol`) calls them for every
(fold, seed) and names the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy, personalize
from tandem.evaluation.protocol_data import Side
from tandem.release.params import DeviceUpdateConfig, RunParams
from tandem.task import Task
from tandem.task.kinds import Kind
from tandem.training import model
from tandem.training.pretrain import convert

Predict = Callable[[np.ndarray], np.ndarray]  # features -> class names or target values


@dataclass
class Fold:
    """What every method of one (fold, seed) sees: the task, the sharing users' sides (their shared
    rows are all a server gets), the server's training config (seeded, with the layers the device
    updates), the device's update settings and the app's update policy, the federated settings."""

    task: Task
    kind: Kind
    sharers: list[Side]
    seed: int
    train: model.TrainConfig
    device: DeviceUpdateConfig
    policy: UpdatePolicy
    fl_rounds: int = 30
    fl_local_epochs: int = 2
    fedprox_mu: float = 0.01


@dataclass
class Fitted:
    """A method's model for the fold as a device installs it, and the update policy the device uses on it."""

    model: DeviceModel
    policy: UpdatePolicy


@dataclass
class Personal:
    """A user's model after its labelled rows: how it predicts, the update's epochs (None: no update) and what the
    update policy gave the user ("base", "fine_tune" or "knn"; None: no policy)."""

    predict: Predict
    epochs: int | None = None
    method: str | None = None


class Method(Protocol):
    rival: bool  # a federated rival: personalized at the protocol's FL budgets only

    def fit(self, fold: Fold) -> Fitted | None:
        """The fold's model from the sharing users (None: the method has no shared model)."""

    def personalize(self, fold: Fold, fitted: Fitted | None, side: Side, labelled: np.ndarray) -> Personal:
        """The user's model from its `labelled` rows (indices into its rows)."""

    def evaluate(self, fold: Fold, predict: Predict, side: Side) -> dict[str, float]:
        """The user's held-out score (the kind's metrics)."""


class DeviceMethod:
    """A method whose model ships to the device: the device personalizes it with the app's update
    policy (the device runtime's update), and every method scores on the user's held-out rows."""

    rival = False

    def personalize(self, fold: Fold, fitted: Fitted | None, side: Side, labelled: np.ndarray) -> Personal:
        p = personalize(fitted.model, side.X[labelled], side.user.labels[labelled], fitted.policy)
        return Personal(p.model.predict, p.epochs, p.method)

    def evaluate(self, fold: Fold, predict: Predict, side: Side) -> dict[str, float]:
        return evaluate(fold, predict, side)


def evaluate(fold: Fold, predict: Predict, side: Side) -> dict[str, float]:
    return fold.kind.score(predict(side.X[side.test]), side.user.labels[side.test])


def to_device(result: model.TrainResult, fold: Fold) -> DeviceModel:
    """The trained network as the device gets it: converted with the fold's layers and update settings."""
    cfg = fold.train.model_copy(update={"hidden_sizes": list(result.model.hidden_sizes)})
    return DeviceModel.load(convert(fold.task, result, RunParams(train=cfg, device=fold.device), {}))
