"""What differs between a classifier and a regressor, in one place: two implementations of one small
interface instead of `if CLASSIFICATION` branches (issue 17). A caller asks the task's kind
(`kind_of(task)`) for the targets of its examples, the server's loss, the Core ML head, the metrics,
which direction of the headline metric is better (the gates') and the device update's loss and scale.

So far the table reader, pretraining's targets, the export's device rate and the regression
evaluation ask it; the other branches (gates, reports, the device runtime) are still to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tandem.task.definition import Task


@dataclass(frozen=True)
class Classification:
    """Class labels; cross-entropy; a softmax head; accuracy and macro-F1, higher is better."""

    classes: tuple[str, ...]
    target = None  # (a regressor's numeric target section; a classifier has class names instead)
    name: str = "classification"
    loss: str = "cross-entropy on logits (label smoothing allowed)"
    export_head: str = "neuralNetworkClassifier"
    metrics: tuple[str, ...] = ("accuracy", "macro_f1")
    headline: str = "accuracy"
    higher_is_better: bool = True
    update_loss: str = "categorical cross-entropy on the softmax output"

    def labels(self, values) -> np.ndarray:
        """A table's target column as the device keeps it: class names."""
        return np.asarray(values).astype(str)

    def targets(self, labels) -> np.ndarray:
        """What the network trains on: class indices in the model's output order; a name outside the
        declared classes raises."""
        index = {name: i for i, name in enumerate(self.classes)}
        try:
            return np.array([index[str(label)] for label in labels], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"label {e.args[0]!r} is not one of {list(self.classes)}") from None

    def declared(self, values) -> np.ndarray:
        """Which of a table's target values the model can learn (the others are dropped and counted)."""
        return np.isin(np.asarray(values).astype(str), self.classes)

    def device_rate(self, learning_rate: float, target_std: float, updatable_layers, floor: float = 1e-6) -> float:
        """Cross-entropy has no target scale: the rate is the rate."""
        return learning_rate

    def spec_entry(self) -> dict:
        """What `feature_spec.json` says of the model's output: the class names in output order."""
        return {"labels": list(self.classes)}

    # the shared batch's label column (tandem.contract.schema, wire, validation, reference set)
    label_arrow: str = "string"  # its arrow type
    label_json: str = "string"  # its JSON type on the wire

    def label_rule(self) -> tuple[str, dict]:
        """What every shared label must satisfy, as (GX expectation, its arguments): one of the classes."""
        return "in_set", {"value_set": list(self.classes)}

    def label_problem(self, values) -> str | None:
        """Why a reference set's labels are unusable, or None."""
        unknown = sorted(set(np.asarray(values).astype(str)) - set(self.classes))
        if unknown:
            return f"unknown label(s) {', '.join(unknown[:5])}; the task's labels are {', '.join(self.classes)}"
        return None

    def label_summary(self, values) -> dict:
        """What a reference set's manifest says of its labels: the count of each class."""
        names, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
        return {"label_counts": {str(k): int(v) for k, v in zip(names, counts)}}

    # the dp sharing form (tandem.privacy.forms.dp): randomized response needs a finite label set
    randomizable_labels: bool = True

    # the synthetic stand-in fleet (tandem.fleet.task_source.generated_users)
    def synthetic_groups(self) -> int:
        """How many prototypes the stand-in draws: one per class."""
        return len(self.classes)

    def synthetic_labels(self, groups: np.ndarray, signal: np.ndarray, user_shift: float, rng) -> np.ndarray:
        """Each example's label: its prototype's class name (draws nothing from `rng`)."""
        return np.asarray(self.classes)[groups]

    # the evaluation (tandem.evaluation): what it scores and which comparisons the kind supports
    evaluations: tuple[str, ...] = ("protocol", "simulation", "audit")  # `tandem evaluate`, `--simulate`, `tandem audit`
    protocol_methods: tuple[str, ...] = ("tandem", "fedavg", "fedavg_all_local", "fedprox", "fedper", "local_only")

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def score(self, predicted, labels) -> dict[str, float]:
        """One user's held-out score: the share of predicted class names equal to its labels."""
        return {"accuracy": float((np.asarray(predicted) == np.asarray(labels)).mean())}

    def train_options(self) -> dict:
        """What the server's trainer is told of the output: the class count (a training set need not hold every class)."""
        return {"n_classes": len(self.classes)}

    def decode(self, outputs) -> np.ndarray:
        """The network's outputs (n, classes) -> the predicted class names."""
        return np.asarray(self.classes)[np.asarray(outputs).argmax(1)]

    # the release (tandem.release): what a candidate is scored and gated by
    release_metrics: tuple[str, ...] = ("accuracy", "macro_f1")  # logged and in the manifest
    headline_label: str = "accuracy"
    margin_setting: str = "accuracy_margin"  # the gate parameter that moves the floor over the baseline
    # what the floor judges: the generic model on the evaluation users (a classifier is useful before
    # any update), or the model after each user's on-device update (a regressor's generic model only
    # gives the shape; the level is each user's, and the device learns it: docs/release-gates.md)
    floor_on: str = "generic"
    dp_sgd: bool = True  # user-level DP-SGD trains this kind

    def measure(self, truth, predicted, metrics) -> dict:
        """Accuracy, macro-F1 and per-class figures of predicted class indices (or names);
        `metrics` is tandem.training.metrics, handed in (the task layer imports nothing above it)."""
        return metrics.metrics(truth, predicted, list(self.classes))

    def device_outputs(self, device, X) -> np.ndarray:
        """What parity compares of a Core ML model run like a phone runs it: its probabilities."""
        return device.predict_proba(X)

    def predicted(self, outputs) -> np.ndarray:
        """The network's outputs (probabilities) -> predicted class indices, like `targets`."""
        return np.asarray(outputs).argmax(1)

    def parity(self, ours, theirs) -> tuple[float, bool]:
        """Largest probability difference, and whether every row's most likely class is the same."""
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        return float(np.abs(ours - theirs).max()), bool((ours.argmax(1) == theirs.argmax(1)).all())

    def baseline(self, labels, trained_on=None) -> tuple[float, str]:
        """What a model must beat without learning anything: the accuracy of always predicting the
        most common class of these rows (the best constant answer on them)."""
        names, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
        return float(counts.max() / counts.sum()), f"always predicting the majority class {str(names[counts.argmax()])!r}"

    def bar(self, baseline: float, margin: float) -> float:
        """The floor: the baseline's accuracy plus the margin (accuracy points)."""
        return baseline + margin

    def row_loss(self, outputs, targets) -> np.ndarray:
        """Each row's cross-entropy (what a loss-threshold membership attack thresholds)."""
        p = np.clip(np.asarray(outputs)[np.arange(len(targets)), np.asarray(targets, np.int64)], 1e-12, 1.0)
        return -np.log(p)

    def summary(self, metrics: dict) -> str:
        return f"accuracy {metrics['accuracy']:.3f} on {metrics['n_users']} evaluation users"

    def plot(self, truth, predicted, metrics, folder, title: str):
        """The confusion matrix of class indices, as a PNG in `folder`; its path."""
        png = folder / "confusion_matrix.png"
        cm = metrics.confusion_matrix(truth, predicted, len(self.classes))
        metrics.plot_confusion_matrix(cm, list(self.classes), png, title=title)
        return png


@dataclass(frozen=True)
class Regression:
    """A numeric target; MSE on the standardized target (its scale folded into the head for the
    device); one output; MAE and RMSE, lower is better."""

    unit: str
    target: dict = field(default_factory=dict, compare=False)  # the task's target section (name, unit, range)
    classes = ()  # (a classifier's class names, in output order; a regressor has none)
    name: str = "regression"
    loss: str = "MSE on the standardized target"
    export_head: str = "neuralNetworkRegressor"
    metrics: tuple[str, ...] = ("mae", "rmse")
    headline: str = "mae"
    higher_is_better: bool = False
    update_loss: str = "MSE in target units (the head holds the target's sd and mean)"

    def labels(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def targets(self, labels) -> np.ndarray:
        return np.asarray(labels, dtype=np.float64)

    def declared(self, values) -> np.ndarray:
        return np.ones(len(values), dtype=bool)

    def device_rate(self, learning_rate: float, target_std: float, updatable_layers, floor: float = 1e-6) -> float:
        """The device rate in target units for one stated for the standardized target. An SGD step on
        the folded head moves predictions by the same fraction of their error in any unit: unchanged.
        A layer below the head sees a gradient sd^2 times the standardized one: when any is updatable
        the rate is divided by sd^2 (never below `floor`, Core ML's smallest allowed)."""
        if all(name == "head" for name in updatable_layers):
            return learning_rate
        return max(learning_rate / float(target_std) ** 2, floor)

    def spec_entry(self) -> dict:
        """What `feature_spec.json` says of the model's output: the numeric target it predicts."""
        return {"target": dict(self.target)}

    label_arrow: str = "float64"
    label_json: str = "number"

    def label_rule(self) -> tuple[str, dict]:
        """Within the target's declared range."""
        return "between", {"min_value": self.target["min"], "max_value": self.target["max"]}

    def label_problem(self, values) -> str | None:
        target = np.asarray(values)
        name, unit, lo, hi = (self.target.get(k) for k in ("name", "unit", "min", "max"))
        if target.dtype.kind not in "fiu" or not np.isfinite(target).all():
            return f"labels must be finite numbers ({name}, {unit})"
        if target.min() < lo or target.max() > hi:
            return f"{name} outside its range [{lo:g}, {hi:g}]"
        return None

    def label_summary(self, values) -> dict:
        target = np.asarray(values, dtype=np.float64)
        return {"target_range": [float(target.min()), float(target.max())]}

    randomizable_labels: bool = False  # a numeric target has no finite set to randomize over (no dp form)

    def synthetic_groups(self) -> int:
        """How many input prototypes the stand-in draws (the target is a function of the inputs)."""
        return 4

    def synthetic_labels(self, groups: np.ndarray, signal: np.ndarray, user_shift: float, rng) -> np.ndarray:
        """A target within the declared range: the inputs' `signal` in [-1, 1] spread over half the
        range, a little noise, and the user's own shift."""
        lo, hi = self.target["min"], self.target["max"]
        return np.clip((lo + hi) / 2 + signal * (hi - lo) / 4 + rng.normal(0, 0.01, len(signal)) * (hi - lo)
                       + 0.1 * (hi - lo) * user_shift, lo, hi)

    # Tandem's federated rivals train with cross-entropy: a regressor is compared with the user's
    # own mean and a local model instead; the rounds simulation and the audit score classifiers.
    evaluations: tuple[str, ...] = ("protocol",)
    protocol_methods: tuple[str, ...] = ("tandem", "own_mean", "local_only")
    n_outputs: int = 1

    def score(self, predicted, labels) -> dict[str, float]:
        """One user's held-out errors in target units: MAE and RMSE."""
        d = np.asarray(predicted, np.float64) - np.asarray(labels, np.float64)
        return {"mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean()))}

    def train_options(self) -> dict:
        return {"regression": True}

    def decode(self, outputs) -> np.ndarray:
        """The network's outputs (n, 1), already in target units -> the predictions (n,)."""
        return np.asarray(outputs, np.float64)[:, 0]

    # the release (tandem.release): what a candidate is scored and gated by
    release_metrics: tuple[str, ...] = ("mae", "rmse", "r2")
    headline_label: str = "MAE"
    margin_setting: str = "mae_margin"
    floor_on: str = "personalized"  # against each user's own mean of the examples it labelled
    dp_sgd: bool = False  # DP-SGD here trains classifiers only

    def measure(self, truth, predicted, metrics) -> dict:
        return metrics.regression_metrics(truth, predicted)

    def device_outputs(self, device, X) -> np.ndarray:
        return device.predict(X)

    def predicted(self, outputs) -> np.ndarray:
        """The network's outputs (n,) or (n, 1), in target units -> the predictions (n,)."""
        outputs = np.asarray(outputs, np.float64)
        return outputs.reshape(len(outputs), -1)[:, 0]

    def parity(self, ours, theirs) -> tuple[float, bool]:
        """Largest difference relative to the target's scale (at least 1 unit)."""
        ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        return float(np.abs(ours - theirs).max() / max(1.0, float(np.abs(theirs).max()))), True

    def baseline(self, labels, trained_on=None) -> tuple[float, str]:
        """The MAE on `labels` of always predicting the mean of `trained_on` (a user's own labelled
        examples; of `labels` themselves when none given)."""
        labels = np.asarray(labels, np.float64)
        source = labels if trained_on is None or not len(trained_on) else np.asarray(trained_on, np.float64)
        mean = float(source.mean())
        return float(np.abs(labels - mean).mean()), f"always predicting the mean {mean:.4g} {self.unit}".rstrip()

    def bar(self, baseline: float, margin: float) -> float:
        """The ceiling: the baseline's MAE less the margin's share of it."""
        return baseline * (1.0 - margin)

    def row_loss(self, outputs, targets) -> np.ndarray:
        """Each row's squared error."""
        return (np.asarray(outputs, np.float64) - np.asarray(targets, np.float64)) ** 2

    def summary(self, metrics: dict) -> str:
        return f"MAE {metrics['mae']:.3f}, RMSE {metrics['rmse']:.3f} on {metrics['n_users']} evaluation users"

    def plot(self, truth, predicted, metrics, folder, title: str):
        """Predicted against true, as a PNG in `folder`; its path."""
        png = folder / "predicted_vs_true.png"
        metrics.plot_predicted_vs_true(truth, predicted, png, unit=self.unit, title=title)
        return png


Kind = Classification | Regression


# The kinds, by the `target.kind` a task.yaml states: one line each.
KINDS = {
    "classes": lambda target: Classification(tuple(target.labels)),
    "numeric": lambda target: Regression(target.unit, target.model_dump()),
}


def kind_of(task: Task) -> Kind:
    """The task's kind, from its target."""
    return KINDS[task.target.kind](task.target)
