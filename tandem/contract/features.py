"""Windowing and featurization: the one definition both sides use, derived from a task.

The server featurizes shared examples with this module and the device runtime does the same before
Core ML sees one. The featurization is the task's pipeline of named steps from the feature
operation library (`tandem.contract.feature_ops`). `feature_spec()` writes down every step and
constant so the Swift side can implement it; the release's golden vectors prove it matches. numpy
only, float64. A tabular task's row is a window of one sample whose channels are its columns.

Nothing here reads which task is served: a caller holds the task (resolved once from `Settings`,
carried on the pipeline's `Context`) and asks `of(task)` for its featurization.
"""

from __future__ import annotations

import numpy as np

from tandem.contract import feature_ops
from tandem.task import Task, once_per_task
from tandem.task.kinds import kind_of


class Featurization:
    """A task's inputs, windowing and feature pipeline, checked once. Build it with `of(task)`."""

    def __init__(self, task: Task):
        self.tag = task.tag
        self.kind = kind_of(task)
        self.classes: tuple[str, ...] = self.kind.classes  # the model's class order (a regressor: none)
        self.target: dict | None = self.kind.target  # a regressor's numeric target section (a classifier: None)
        self.input_kind = task.inputs.kind
        if task.inputs.kind == "sensor":
            channels = task.inputs.channels
            self.sample_rate_hz, self.window, self.step = task.inputs.sample_rate_hz, task.inputs.window, task.inputs.step
            self.channel_bounds = {c.name: c.max_abs for c in channels}  # max |value| a device reports
        else:
            channels = task.inputs.columns
            self.sample_rate_hz, self.window, self.step = 1.0, 1, 1
            self.channel_bounds = {c.name: max(abs(c.min), abs(c.max)) for c in channels}
        self.channels = tuple(c.name for c in channels)
        self.units = {c.name: c.unit for c in channels}
        self.pipeline: list[dict] = [dict(step) for step in task.featurization]
        feature_ops.check(self.pipeline, self.channels)
        self.feature_names: list[str] = feature_ops.feature_names(self.pipeline)
        self.n_features = len(self.feature_names)
        # What validation and the DP form check pairwise: every series with both a min and a max feature.
        self.series = tuple(s for step in self.pipeline if step["op"] == "stats"
                            and {"min", "max"} <= set(step["params"]["statistics"]) for s in step["inputs"])

    def label_indices(self, labels) -> np.ndarray:
        """Class names -> their indices in the model's class order; a name outside it raises."""
        return label_indices(labels, self.classes)

    def cut_windows(self, signals: np.ndarray, labels: np.ndarray, skip=frozenset()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows of `window` samples every `step` samples, each inside one run of a single label
        (labels in `skip`, e.g. transitions, give no windows).

        Returns (windows (n, window, channels), labels (n,), start sample index (n,)).
        """
        labels = np.asarray(labels)
        windows, out, starts = [], [], []
        change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        for begin, end in zip(np.r_[0, change], np.r_[change, len(labels)]):
            if labels[begin] in skip:
                continue
            for start in range(begin, end - self.window + 1, self.step):
                windows.append(signals[start:start + self.window])
                out.append(labels[begin])
                starts.append(start)
        if not windows:
            return np.empty((0, self.window, len(self.channels))), labels[:0], np.empty(0, np.int64)
        return np.stack(windows), np.asarray(out), np.asarray(starts)

    def featurize(self, windows: np.ndarray, pipeline: list[dict] | None = None) -> np.ndarray:
        """Windows (n, window, channels) -> features (n, n_features), all windows at once."""
        windows = np.asarray(windows, dtype=np.float64)
        pipeline = self.pipeline if pipeline is None else pipeline
        if len(windows) == 0:
            return np.empty((0, len(feature_ops.feature_names(pipeline))))
        if windows.shape[1:] != (self.window, len(self.channels)):
            raise ValueError(f"a window is ({self.window}, {len(self.channels)}) samples x channels, "
                             f"got {windows.shape[1:]}")
        channels = {name: windows[:, :, i] for i, name in enumerate(self.channels)}
        return feature_ops.run(pipeline, channels, self.sample_rate_hz)

    def featurize_window(self, window: np.ndarray) -> np.ndarray:
        """One raw window (window, channels) -> feature vector (n_features,), in feature_names order."""
        window = np.asarray(window, dtype=np.float64)
        if window.shape != (self.window, len(self.channels)):
            raise ValueError(f"a window is ({self.window}, {len(self.channels)}) samples x channels, got {window.shape}")
        return self.featurize(window[None])[0]

    def feature_bounds(self) -> dict[str, tuple[float, float]]:
        """Plausible [lo, hi] of every feature (feature_names order), derived from the channel bounds step by step."""
        return feature_ops.bounds(self.pipeline, self.channel_bounds, self.window, self.sample_rate_hz)

    def feature_spec(self) -> dict:
        """Every step and constant of the featurization, for the device side to implement."""
        sensor = self.input_kind == "sensor"
        layout = ("window[t][c]: sample t = 0..window_samples-1 in time order, channel c in `channels` order" if sensor else
                  "window[0][c]: one row, column c in `channels` order (a tabular example is a window of one sample)")
        spec = {
            "version": 3,
            "task": self.tag,
            "input": {
                "kind": self.input_kind,
                "sample_rate_hz": self.sample_rate_hz,
                "window_samples": self.window,
                "step_samples": self.step,
                "channels": list(self.channels),
                "units": dict(self.units),
                "layout": layout,
            },
            "arithmetic": "IEEE-754 double precision throughout; every series is a 1-D array over the window's samples",
            "pipeline": ("run `steps` in order. The window's channels are the first named series. A step of kind 'series' "
                         "adds its `outputs` as new series; a step of kind 'features' appends its `outputs` (scalars) to "
                         "the feature vector, in the order listed. n in a definition is the length of the series it reads "
                         "(window_samples, or window_samples - 1 after jerk)."),
            "steps": feature_ops.spec(self.pipeline, self.window, self.sample_rate_hz),
            "model_input": "the feature vector in feature_names order; standardization ((x - mean) / std) is inside the "
                           "Core ML model: the app feeds raw features",
            "feature_names": list(self.feature_names),
            "n_features": self.n_features,
        }
        if sensor:
            spec["input"]["windowing"] = "a window lies inside one run of a single label; starts every step_samples"
        spec.update(self.kind.spec_entry())
        return spec


@once_per_task
def of(task: Task) -> Featurization:
    """The task's featurization."""
    return Featurization(task)


def label_indices(labels, classes) -> np.ndarray:
    """Class names -> their indices in `classes` (the model's class order); a name outside it raises."""
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.array([index[str(label)] for label in labels], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]!r} is not one of {list(classes)}") from None

