"""Tandem: the server's model trained on the sharing users' shared rows (the fold's training config),
personalized on the device by the app's update policy."""

from __future__ import annotations

from dataclasses import replace

from tandem.evaluation.methods.base import DeviceMethod, Fitted, Fold, to_device
from tandem.evaluation.protocol_data import server_data
from tandem.training import model


class Tandem(DeviceMethod):
    def fit(self, fold: Fold) -> Fitted:
        X, y, groups = server_data(fold.sharers)
        trained = model.train(X, y, fold.train, groups=groups, **fold.kind.train_options())
        # the policy's rate is stated for the standardized target, as the task's device rate is
        rate = fold.kind.device_rate(fold.policy.learning_rate, float(trained.model.target_std),
                                     fold.train.updatable_layers)
        return Fitted(to_device(trained, fold), replace(fold.policy, learning_rate=rate))
