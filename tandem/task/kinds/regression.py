"""A regressor: a numeric target, MSE on the standardized target, one output, MAE and RMSE (lower is better)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
        the rate is divided by sd^2 (never below `floor`, Core ML's smallest allowed). The calibration
        layer sees the standardized head and holds the sd itself: unchanged too."""
        if all(name in ("head", "calibration") for name in updatable_layers):
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
