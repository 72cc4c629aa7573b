"""The parameters of a train-and-release run: typed, described and validated, so the Prefect UI
renders a form for them and a bad value fails before any work starts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tandem.model import TrainConfig


class DeviceUpdateConfig(BaseModel):
    """How the app may update the model on the device (written into the .mlmodel)."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="Core ML optimizer for on-device updates")
    learning_rate: float = Field(0.01, gt=0, le=1, description="default on-device learning rate")
    mini_batch_size: int = Field(8, ge=1, le=1024, description="default on-device mini-batch size")
    epochs: int = Field(10, ge=1, le=100, description="default on-device epochs (the app may choose 1..100)")


class RunParams(BaseModel):
    """One train-and-release run."""

    train: TrainConfig = Field(default_factory=TrainConfig, description="pretraining hyperparameters")
    device: DeviceUpdateConfig = Field(default_factory=DeviceUpdateConfig, description="on-device update settings")
    channel: Literal["staging", "production"] = Field("staging", description="channel the release is published to")
    data_window_days: int | None = Field(
        None, ge=1, description="train only on batches captured in the last N days (None: all accepted batches)")
    force: bool = Field(False, description="train and release even when no new batch arrived since the last release")
