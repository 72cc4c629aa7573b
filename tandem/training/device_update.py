"""How the app may update the model on the device: the one source of the update settings written
into the .mlmodel (defaults and the ranges the app may choose from). The export, the run
parameters, the release gate and the evaluation all take them from here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from tandem.contract.features import TASK

EPOCHS_ALLOWED = tuple(range(1, 101))
BATCH_ALLOWED = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class DeviceUpdateConfig(BaseModel):
    """On-device update settings (Core ML's updateParams)."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="Core ML optimizer for on-device updates")
    # Defaults: the task definition's `device` section (the built-in sensor task's were measured on
    # its evaluation users, 20 labelled windows each: momentum 0.9 overfit the few windows).
    learning_rate: float = Field(TASK.device.learning_rate, gt=0, le=1, description="default on-device learning rate")
    momentum: float = Field(TASK.device.momentum, ge=0, lt=1, description="default SGD momentum on the device")
    mini_batch_size: int = Field(TASK.device.batch_size, ge=1, le=1024, description="default on-device mini-batch size")
    epochs: int = Field(TASK.device.epochs, ge=1, le=100, description="default on-device epochs (the app may choose 1..100)")
    epochs_allowed: list[int] = Field(list(EPOCHS_ALLOWED), description="epochs the app may choose (the default is added)")
    mini_batch_allowed: list[int] = Field(list(BATCH_ALLOWED), description="mini-batch sizes the app may choose")
    learning_rate_range: tuple[float, float] = Field((1e-6, 1.0), description="learning rates the app may choose")
    momentum_range: tuple[float, float] = Field((0.0, 1.0), description="SGD momenta the app may choose")
    beta1: float = Field(0.9, gt=0, lt=1, description="Adam beta1")
    beta2: float = Field(0.999, gt=0, lt=1, description="Adam beta2")
    eps: float = Field(1e-8, gt=0, lt=1, description="Adam epsilon")
    shuffle_seed: int | None = Field(None, description="seed of the update's shuffling (None: Core ML's own)")

    @model_validator(mode="after")
    def _consistent(self) -> "DeviceUpdateConfig":
        lo, hi = self.learning_rate_range
        if not lo <= self.learning_rate <= hi:
            raise ValueError(f"learning_rate {self.learning_rate} outside its allowed range {self.learning_rate_range}")
        if min(self.epochs_allowed, default=1) < 1 or min(self.mini_batch_allowed, default=1) < 1:
            raise ValueError("allowed epochs and mini-batch sizes must be >= 1")
        return self

    @property
    def epochs_set(self) -> list[int]:
        return sorted({int(e) for e in self.epochs_allowed} | {int(self.epochs)})

    @property
    def batch_set(self) -> list[int]:
        return sorted({int(b) for b in self.mini_batch_allowed} | {int(self.mini_batch_size)})

