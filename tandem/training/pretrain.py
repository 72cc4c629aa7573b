"""Pretrain: from a dataset snapshot (the shared, modified form) to a trained network (the task's
classifier or regressor), and on to an updatable Core ML model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tandem.contract.features import CLASSES, CLASSIFICATION, FEATURE_NAMES, TASK
from tandem.task.kinds import kind_of
from tandem.training import export as coreml_export
from tandem.training import model
from tandem.training.dp_sgd import train_user_level


def frame_xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, class indices (or numeric targets) and pseudonyms (for a user-wise validation split)."""
    X = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    y = kind_of(TASK).targets(frame["label"].to_numpy())
    return X, y, frame["pseudonym"].to_numpy(str)


def pretrain(frame: pd.DataFrame, config: model.TrainConfig, on_epoch=None, dp_sgd=None) -> model.TrainResult:
    """Plain training, or user-level DP-SGD (`tandem.training.dp_sgd`) when `dp_sgd.enabled`: its result
    carries the model's guarantee in `.privacy`."""
    X, y, groups = frame_xy(frame)
    if dp_sgd is not None and dp_sgd.enabled:
        if not CLASSIFICATION:
            raise ValueError("DP-SGD here trains classifiers only; this task has a numeric target")
        result = train_user_level(X, y, groups, config, dp_sgd)
        for h in result.history if on_epoch else ():
            on_epoch(h["epoch"], {k: v for k, v in h.items() if k != "epoch"})
        return result
    return model.train(X, y, config, on_epoch=on_epoch, groups=groups)


def convert(result: model.TrainResult, params, metadata: dict) -> bytes:
    """The updatable Core ML model, serialized. A regressor whose body layers are updatable gets the
    device learning rate in target units (`tandem.task.kinds.Regression.device_rate`)."""
    net, device = result.model, params.device
    rate = kind_of(TASK).device_rate(device.learning_rate, float(net.target_std), params.train.updatable_layers,
                                     device.learning_rate_range[0])
    if rate != device.learning_rate:
        device = device.model_copy(update={"learning_rate": rate})
    spec = coreml_export.to_updatable_mlmodel(
        result.model,
        class_labels=list(CLASSES),
        updatable_layers=params.train.updatable_layers,
        update=device,
        metadata={k: str(v) for k, v in metadata.items()},
    )
    return spec.SerializeToString()
