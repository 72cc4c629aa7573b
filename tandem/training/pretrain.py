"""Pretrain: from a dataset snapshot (the shared, modified form) to a trained network (the task's
classifier or regressor), and on to an updatable Core ML model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tandem.contract import features
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import export as coreml_export
from tandem.training import model
from tandem.training.dp_sgd import train_user_level


def frame_xy(task: Task, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, class indices (or numeric targets) and pseudonyms (for a user-wise validation split)."""
    X = frame[list(features.of(task).feature_names)].to_numpy(np.float64)
    y = kind_of(task).targets(frame["label"].to_numpy())
    return X, y, frame["pseudonym"].to_numpy(str)


def pretrain(task: Task, frame: pd.DataFrame, config: model.TrainConfig, on_epoch=None,
             dp_sgd=None) -> model.TrainResult:
    """The task's network, trained on its shared rows: plain training, or user-level DP-SGD
    (`tandem.training.dp_sgd`) when `dp_sgd.enabled`: its result carries the model's guarantee in `.privacy`."""
    X, y, groups = frame_xy(task, frame)
    kind = kind_of(task)
    if dp_sgd is not None and dp_sgd.enabled:
        if not kind.dp_sgd:
            raise ValueError(f"DP-SGD here trains classifiers only; task {task.name} is a {kind.name} task")
        result = train_user_level(task, X, y, groups, config, dp_sgd)
        for h in result.history if on_epoch else ():
            on_epoch(h["epoch"], {k: v for k, v in h.items() if k != "epoch"})
        return result
    return model.train(X, y, config, on_epoch=on_epoch, groups=groups, **kind.train_options())


def convert(task: Task, result: model.TrainResult, params, metadata: dict) -> bytes:
    """The task's updatable Core ML model, serialized. A regressor whose body layers are updatable gets
    the device learning rate in target units (`tandem.task.kinds.Regression.device_rate`)."""
    net, device = result.model, params.device
    rate = kind_of(task).device_rate(device.learning_rate, float(net.target_std), params.train.updatable_layers,
                                     device.learning_rate_range[0])
    if rate != device.learning_rate:
        device = device.model_copy(update={"learning_rate": rate})
    spec = coreml_export.to_updatable_mlmodel(
        result.model,
        list(kind_of(task).classes),
        updatable_layers=params.train.updatable_layers,
        update=device,
        feature_names=features.of(task).feature_names,
        metadata={k: str(v) for k, v in metadata.items()},
        task=task,
    )
    return spec.SerializeToString()
