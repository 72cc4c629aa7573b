"""How the app may update the model on the device: the one source of the update settings written
into the .mlmodel (defaults and the ranges the app may choose from). The export, the run
parameters, the release gate and the evaluation all take them from here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from tandem.device.update_policy import UpdatePolicy
from tandem.task import Task
from tandem.task.definition import DeviceDefaults

GENERIC = DeviceDefaults()  # a task.yaml's `device` section when it says nothing: never another task's
EPOCHS_ALLOWED = tuple(range(1, 101))
BATCH_ALLOWED = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class DeviceUpdateConfig(BaseModel):
    """On-device update settings (Core ML's updateParams)."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="Core ML optimizer for on-device updates")
    # Generic defaults; `for_task` takes the task definition's `device` section (the built-in sensor
    # task's were measured on its evaluation users, 20 labelled windows each: momentum 0.9 overfit them).
    learning_rate: float = Field(GENERIC.learning_rate, gt=0, le=1, description="default on-device learning rate")
    momentum: float = Field(GENERIC.momentum, ge=0, lt=1, description="default SGD momentum on the device")
    mini_batch_size: int = Field(GENERIC.batch_size, ge=1, le=1024, description="default on-device mini-batch size")
    epochs: int = Field(GENERIC.epochs, ge=1, le=100, description="default on-device epochs (the app may choose 1..100)")
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

    @classmethod
    def for_task(cls, task: Task, **given) -> "DeviceUpdateConfig":
        """The task's `device` section, `given` over it."""
        d = task.device
        return cls.model_validate({"learning_rate": d.learning_rate, "momentum": d.momentum,
                                   "mini_batch_size": d.batch_size, "epochs": d.epochs, **given})

    def on(self, task: Task) -> "DeviceUpdateConfig":
        """This config with every field it was not given taken from the task (`for_task`)."""
        return DeviceUpdateConfig.for_task(task, **self.model_dump(exclude_unset=True))

    @property
    def epochs_set(self) -> list[int]:
        return sorted({int(e) for e in self.epochs_allowed} | {int(self.epochs)})

    @property
    def batch_set(self) -> list[int]:
        return sorted({int(b) for b in self.mini_batch_allowed} | {int(self.mini_batch_size)})



def policy_for(task: Task, **overrides) -> UpdatePolicy:
    """The app's update policy for a task's devices: its mini-batch size, acceptance margin and folds (task.yaml
    `device`). The release ships it in feature_spec.json; the gates, golden vectors and evaluation use it."""
    d = task.device
    return UpdatePolicy(**{"mini_batch_size": d.batch_size, "accept_margin": d.accept_margin,
                           "holdout_folds": d.holdout_folds, "knn_neighbors": d.knn_neighbors, **overrides})
