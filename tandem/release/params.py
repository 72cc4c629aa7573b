"""The parameters of a train-and-release run: typed, described and validated, so the Prefect UI
renders a form for them and a bad value fails before any work starts."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from tandem.task import Task
from tandem.task.definition import EvaluationSpec
from tandem.training.device_update import DeviceUpdateConfig
from tandem.training.dp_sgd_params import DpSgdConfig
from tandem.training.model import TrainConfig

__all__ = ["DeviceUpdateConfig", "GateThresholds", "ParamsError", "RunParams", "TrainConfig", "load_run_params"]


class ParamsError(ValueError):
    """A params file that is not JSON, or names a parameter that does not exist."""


class GateThresholds(BaseModel):
    """What a candidate must show before it may reach a channel."""

    parity_tolerance: float = Field(1e-5, gt=0, description="max |Core ML runtime - torch| probability difference")
    # The floor a candidate must clear is relative to what the task can state without a model (the
    # comparison gate, docs/release-gates.md): an absolute number means nothing for a task of unknown
    # difficulty (issue 17: 0.70 blocked an honest first release and passed one worse than the majority).
    accuracy_margin: float = Field(
        0.05, ge=-1, le=1, description="a classifier: its accuracy on the evaluation users must exceed always "
                                       "predicting the majority class of their rows by this much (accuracy points; "
                                       "negative: accept a model below that baseline, e.g. a deliberately noisy one)")
    mae_margin: float = Field(
        0.05, ge=-10, lt=1, description="a regressor: its MAE after each user's on-device update must be this share "
                                        "below each user predicting its own mean of the same labelled examples "
                                        "(0.05: 5% below; negative: accept one above it)")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="an absolute floor of accuracy on the "
                                       "evaluation users, on top of the baseline's (None: none)")
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="max accuracy drop against production")
    max_macro_f1_drop: float = Field(0.02, ge=0, le=1, description="max macro-F1 drop against production")
    max_personalization_gain_drop: float = Field(
        0.03, ge=0, le=1, description="max drop of the on-device personalization gain against production")
    personalization_labels: int = Field(
        EvaluationSpec().labelled_per_user, ge=1, le=1000,
        description="labelled windows each evaluation user personalizes on (spread over classes and time)")
    max_update_accuracy_drop: float = Field(
        0.0, ge=0, le=1, description="the update gate's tolerance: mean accuracy after personalization may be this much "
                                     "below before")
    update_harm_alpha: float = Field(
        0.05, gt=0, le=1, description="the update gate blocks a drop beyond the tolerance only when the held-out windows "
                                      "the update broke outnumber those it fixed at this sign-test p-value (1: any drop "
                                      "blocks)")
    personalization_users: int = Field(6, ge=1, le=1000, description="evaluation users personalized in the update gate")
    max_mae: float | None = Field(None, ge=0, description="a regressor: block a candidate whose MAE on the "
                                  "evaluation users exceeds this (target units; None: no ceiling)")
    max_error_increase: float = Field(0.0, ge=0, description="a regressor: how much its MAE and RMSE may exceed "
                                      "production's on the same users (target units)")
    max_membership_auc: float | None = Field(
        None, ge=0.5, le=1, description="block a release whose loss-threshold membership AUC (training rows vs "
                                        "never-sharing users' windows) exceeds this (None: measured, not gated)")

    @classmethod
    def for_task(cls, task: Task, **given) -> "GateThresholds":
        """The task's own values (its `evaluation.labelled_per_user`), `given` over them."""
        return cls.model_validate({"personalization_labels": task.evaluation.labelled_per_user, **given})

    def on(self, task: Task) -> "GateThresholds":
        return GateThresholds.for_task(task, **self.model_dump(exclude_unset=True))


class RunParams(BaseModel):
    """One train-and-release run. Its defaults are generic, never a task's: `RunParams.for_task(task,
    given)` (or `params.on(task)`) fills every value not given from the task's task.yaml."""

    train: TrainConfig = Field(default_factory=TrainConfig, description="pretraining hyperparameters")
    device: DeviceUpdateConfig = Field(default_factory=DeviceUpdateConfig, description="on-device update settings")
    gates: GateThresholds = Field(default_factory=GateThresholds, description="release gates")
    dp_sgd: DpSgdConfig = Field(default_factory=DpSgdConfig, description="user-level DP-SGD (central DP for the model)")
    channel: Literal["staging", "production"] = Field("staging", description="channel the release is published to")
    data_window_days: int | None = Field(
        None, ge=1, description="train only on batches captured in the last N days (None: all accepted batches)")
    force: bool = Field(False, description="train and release even when no new batch arrived since the last release")

    @classmethod
    def for_task(cls, task: Task, given: dict | None = None) -> "RunParams":
        """Run parameters for `task`: what `given` (a dict like a params file's) states, the task's own
        values (training, model, device, evaluation sections) for the rest."""
        given = dict(given or {})
        return cls.model_validate({
            **given,
            "train": TrainConfig.for_task(task, **given.get("train", {})),
            "device": DeviceUpdateConfig.for_task(task, **given.get("device", {})),
            "gates": GateThresholds.for_task(task, **given.get("gates", {})),
        })

    def on(self, task: Task) -> "RunParams":
        """These parameters with every value they were not given taken from the task (`for_task`);
        what an entry point does to the params a flow or a caller handed it."""
        return RunParams.for_task(task, self.model_dump(exclude_unset=True))


def unknown_keys(model: type[BaseModel], given: dict, where: str = "") -> list[str]:
    """Dotted names in `given` that `model` has no field for (a guessed name would be silently ignored)."""
    unknown = []
    for key, value in given.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(where + str(key))
            continue
        inner = field.annotation
        if isinstance(value, dict) and isinstance(inner, type) and issubclass(inner, BaseModel):
            unknown += unknown_keys(inner, value, f"{where}{key}.")
    return unknown


def load_run_params(text: str, task: Task, source: str = "the params file") -> RunParams:
    """RunParams for `task` from a JSON text (what it leaves out: the task's values); not JSON, not an
    object, or an unknown key: one ParamsError line."""
    try:
        given = json.loads(text)
    except ValueError as e:
        raise ParamsError(f"{source} is not JSON ({e}): write an object like "
                          '{"train": {"epochs": 30}, "gates": {"accuracy_margin": 0.1}}') from None
    if not isinstance(given, dict):
        raise ParamsError(f"{source} holds a JSON {type(given).__name__}, not an object of run parameters")
    unknown = unknown_keys(RunParams, given)
    if unknown:
        raise ParamsError(f"{source} names unknown parameters {', '.join(unknown)}: see RunParams "
                          "(tandem/release/params.py) for the names")
    try:
        return RunParams.for_task(task, given)
    except ValidationError as e:  # a bad value, in one line naming it as the file does (train.epochs)
        first = e.errors()[0]
        section = SECTIONS.get(e.title, "")
        name = ".".join([*([section] if section else []), *(str(p) for p in first["loc"])])
        raise ParamsError(f"{source}: {name}: {first['msg']} (got {first.get('input')!r})") from None


SECTIONS = {"TrainConfig": "train", "DeviceUpdateConfig": "device", "GateThresholds": "gates", "DpSgdConfig": "dp_sgd"}
