"""A task definition: what one app learns, described once (``task.yaml`` in a task folder).

Everything else derives from it: the batch schema, the GX suite, the featurization and its
``feature_spec.json``, the model's head and loss, the Core ML export (classifier or regressor), the
device runtime's inputs, golden vectors and the reports. Its digest is recorded in every batch and
every release manifest, so a batch made under another task or version is quarantined.

Inputs are either sensor streams (windows of samples x channels) or tabular columns; a tabular row
is a window of one sample whose channels are the columns, so one featurization library serves both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="a series name the featurization reads")
    unit: str = Field(description="what one sample is measured in, e.g. 'g' or 'rad/s'")
    max_abs: float = Field(gt=0, description="the largest |value| a device reports: validation derives every "
                                             "feature's plausible range from it")


class SensorInputs(_Strict):
    kind: Literal["sensor"] = "sensor"
    channels: list[Channel] = Field(min_length=1)
    sample_rate_hz: float = Field(gt=0)
    window: int = Field(ge=2, description="samples per window")
    step: int = Field(ge=1, description="samples between window starts")


class Column(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"column {self.name}: min {self.min} is above max {self.max}")
        return self


class TabularInputs(_Strict):
    kind: Literal["tabular"] = "tabular"
    columns: list[Column] = Field(min_length=1)


class ClassTarget(_Strict):
    kind: Literal["classes"] = "classes"
    labels: list[str] = Field(min_length=2, description="the model's classes, in output order")
    description: str = "the class of the example"


class NumericTarget(_Strict):
    kind: Literal["numeric"] = "numeric"
    name: str
    unit: str
    min: float
    max: float
    description: str = ""


class ModelSpec(_Strict):
    hidden_sizes: list[int] = Field(default_factory=lambda: [128, 64], description="the MLP body's layer widths")
    updatable: Literal["head", "all", "calibration"] = Field(
        "head", description="which dense layers the device may update: 'head' (the last one only), 'all', or "
                            "'calibration' (an affine layer the export adds after the head, the identity at release: "
                            "a classifier's logits mixed, a regressor's scale and level)")

    def updatable_layers(self, n_hidden: int | None = None) -> list[str]:
        """The dense layers the released model lets the device update (names as in the exported network)."""
        n_hidden = len(self.hidden_sizes) if n_hidden is None else n_hidden
        if self.updatable == "calibration":
            return ["calibration"]
        return ["head"] if self.updatable == "head" else [*(f"body.{i}" for i in range(n_hidden)), "head"]


class TrainingSpec(_Strict):
    """The server's pretraining hyperparameters for this task (e.g. a tuning study's choice). Any left
    out take Tandem's generic defaults (`tandem.training.model.GENERIC_TRAINING`): never another task's."""
    epochs: int | None = Field(None, ge=1, le=1000)
    learning_rate: float | None = Field(None, gt=0, le=1)
    batch_size: int | None = Field(None, ge=1, le=65536)
    weight_decay: float | None = Field(None, ge=0, le=1)
    patience: int | None = Field(None, ge=1, le=1000)
    dropout: float | None = Field(None, ge=0, lt=1)
    label_smoothing: float | None = Field(None, ge=0, lt=1)


class DeviceDefaults(_Strict):
    learning_rate: float = Field(1e-3, gt=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    momentum: float = Field(0.0, ge=0, lt=1)
    accept_margin: float | None = Field(
        0.1, ge=0, le=1, description="the app ships a personal update only when, on the user's held-out labelled rows, "
                                     "it does better than the base on max(1, ceil(margin x rows)) more rows than worse; "
                                     "null: no check (docs/evaluation.md, the personalization policy)")
    holdout_folds: int = Field(
        1, ge=1, le=10, description="1: the check holds out the latest third of each class's labelled rows; k > 1: "
                                    "every labelled row once, in k turns of task A, the net counts summed "
                                    "(docs/evaluation.md, the personalization policy)")
    knn_neighbors: int | None = Field(
        None, ge=1, le=1000, description="k: the release also ships a k-NN personal model (the network's embedding, "
                                         "then an updatable k-nearest-neighbours classifier, Core ML's native route) and "
                                         "the update policy picks per user between it and the fine-tune on the held-out "
                                         "labels; null: fine-tune only (classification tasks only)")


class SharingDefaults(_Strict):
    policy: str = Field("pseudonymized", description="the modified form devices share in by default")
    dp_clip: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="DP form: feature-name patterns (fnmatch, first match wins) -> [lo, hi]; "
                                          "other features clip to their plausible range")


class EvaluationTargets(_Strict):
    """What `tandem evaluate` grades this task against; a target left out is not graded."""
    generic_accuracy: float | None = Field(None, ge=0, le=1, description="classifier: the generic model's mean "
                                                                         "accuracy on never-sharing users, at least")
    generic_sd_points: float | None = Field(None, ge=0, description="classifier: its sd over seeds, at most (points)")
    gain_points: float | None = Field(None, description="classifier: personalization's mean gain, at least (points)")
    harmed_share: float | None = Field(None, ge=0, le=1, description="share of users personalization harms, at most")
    generic_mae: float | None = Field(None, ge=0, description="regressor: the generic model's MAE, at most "
                                                              "(target units)")
    mae_change: float | None = Field(None, description="regressor: personalized minus generic MAE, at most "
                                                       "(target units; 0: it must not raise the error)")


class EvaluationSpec(_Strict):
    holdout_share: float = Field(0.2, ge=0, lt=1, description="share of pseudonyms never trained on")
    labelled_per_user: int = Field(20, ge=1, description="labelled examples each held-out user personalizes on")
    targets: EvaluationTargets = Field(default_factory=EvaluationTargets,
                                       description="what the evaluation grades (none: reported, not graded)")


class TableSource(_Strict):
    """A parquet or CSV file: one row per sample (sensor) or per example (tabular)."""
    kind: Literal["table"] = "table"
    path: str = Field(description="relative to the task folder, or absolute")
    user: str = Field(description="column naming the user (a raw id: it stays on the simulated device)")
    time: str = Field(description="column ordering a user's rows in time (a timestamp or a number)")
    session: str | None = Field(None, description="sensor tasks: column naming a continuous recording")
    target: str = Field(description="column holding the label or the numeric target")
    columns: dict[str, str] = Field(default_factory=dict, description="input name -> the file's column, when they differ")


class LoaderSource(_Strict):
    """Python, for anything a table cannot say: ``module.py:function`` in the task folder (or a module
    path), returning ``list[tandem.fleet.users.UserData]``."""
    kind: Literal["loader"] = "loader"
    loader: str
    synthetic: str | None = Field(None, description="a fast seeded stand-in with the same shape, for tests")


class DataSource(_Strict):
    name: str = Field(description="what the data set is called")
    citation: str = ""
    terms: str = ""
    source: Annotated[TableSource | LoaderSource, Field(discriminator="kind")]


class Task(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1, description="bump when anything below changes what a batch or a model means")
    description: str
    inputs: Annotated[SensorInputs | TabularInputs, Field(discriminator="kind")]
    featurization: list[dict] = Field(min_length=1, description="steps from tandem.contract.feature_ops")
    target: Annotated[ClassTarget | NumericTarget, Field(discriminator="kind")]
    quasi_identifiers: list[str] = Field(
        default_factory=lambda: ["device_model", "os_version", "app_version", "locale"],
        description="device metadata shared with every batch, generalized for k-anonymity")
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    device: DeviceDefaults = Field(default_factory=DeviceDefaults)
    sharing: SharingDefaults = Field(default_factory=SharingDefaults)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    data: DataSource
    _folder: Path | None = PrivateAttr(None)
    _digest: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _knn_needs_classes(self) -> "Task":
        if self.device.knn_neighbors is not None and self.target.kind != "classes":
            raise ValueError("device.knn_neighbors: a k-NN personal model predicts classes; this task's target is "
                             "numeric (leave knn_neighbors out)")
        return self

    @property
    def folder(self) -> Path | None:
        """Where the task.yaml was read from (its loader and data files are relative to it)."""
        return self._folder

    @property
    def classification(self) -> bool:
        return self.target.kind == "classes"

    @property
    def kind(self) -> str:
        return "classification" if self.classification else "regression"

    def digest(self) -> str:
        """sha256 of the definition's canonical JSON. Excluded, as they do not change what a batch
        means: the data source (where demo data comes from), the server's training hyperparameters,
        the evaluation's targets (how the server trains and grades) and the app's acceptance margin
        (whether a phone keeps its personal update)."""
        if self._digest is None:  # (frozen: computed once)
            body = self.model_dump(mode="json", exclude={"data": True, "training": True, "evaluation": {"targets"},
                                                       "device": {"accept_margin", "holdout_folds", "knn_neighbors"}})
            self._digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return self._digest

    @property
    def tag(self) -> str:
        """What a batch and a manifest record: name, version and the digest's first 12 hex digits."""
        return f"{self.name}/v{self.version}+{self.digest()[:12]}"


def read(folder: Path) -> Task:
    """The task in ``folder/task.yaml``; a one-line error names the first problem."""
    import yaml

    path = Path(folder) / "task.yaml"
    if not path.is_file():
        raise TaskError(f"{folder}: no task.yaml (make one with `tandem init {folder}`)")
    try:
        task = Task.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaskError(f"{path}: {where}: {first['msg']}") from None
    task._folder = Path(folder).resolve()
    return task


class TaskError(ValueError):
    """A task that cannot be found or read."""
