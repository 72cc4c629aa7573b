"""A classifier: class labels, cross-entropy, a softmax head, accuracy and macro-F1 (higher is better)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
