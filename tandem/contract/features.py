"""Windowing and featurization: the one definition both sides use, derived from the active task.

The server featurizes shared examples with this module and the device runtime does the same before
Core ML sees one. The featurization is the task's pipeline of named steps from the feature
operation library (`tandem.contract.feature_ops`). `feature_spec()` writes down every step and
constant so the Swift side can implement it; the release's golden vectors prove it matches. numpy
only, float64. A tabular task's row is a window of one sample whose channels are its columns.
"""

from __future__ import annotations

import numpy as np

from tandem import task as tasks
from tandem.contract import feature_ops

TASK = tasks.active()
if TASK.inputs.kind == "sensor":
    CHANNELS = tuple(c.name for c in TASK.inputs.channels)
    SAMPLE_RATE_HZ = TASK.inputs.sample_rate_hz
    WINDOW, STEP = TASK.inputs.window, TASK.inputs.step
    CHANNEL_BOUNDS = {c.name: c.max_abs for c in TASK.inputs.channels}  # max |value| a device reports
    UNITS = {c.name: c.unit for c in TASK.inputs.channels}
else:
    CHANNELS = tuple(c.name for c in TASK.inputs.columns)
    SAMPLE_RATE_HZ, WINDOW, STEP = 1.0, 1, 1
    CHANNEL_BOUNDS = {c.name: max(abs(c.min), abs(c.max)) for c in TASK.inputs.columns}
    UNITS = {c.name: c.unit for c in TASK.inputs.columns}
CLASSIFICATION = TASK.classification
CLASSES: tuple[str, ...] = tuple(TASK.target.labels) if CLASSIFICATION else ()  # the model's class order

PIPELINE: list[dict] = [dict(step) for step in TASK.featurization]
feature_ops.check(PIPELINE, CHANNELS)

FEATURE_NAMES = feature_ops.feature_names(PIPELINE)
N_FEATURES = len(FEATURE_NAMES)
# What validation and the DP form check pairwise: every series with both a min and a max feature.
SERIES = tuple(s for step in PIPELINE if step["op"] == "stats" and {"min", "max"} <= set(step["params"]["statistics"])
               for s in step["inputs"])


def label_indices(labels, classes=CLASSES) -> np.ndarray:
    """Class names -> their indices in `classes` (the model's class order); a name outside it raises."""
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.array([index[str(label)] for label in labels], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]!r} is not one of {list(classes)}") from None


def cut_windows(signals: np.ndarray, labels: np.ndarray, skip=frozenset()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of WINDOW samples every STEP samples, each inside one run of a single label (labels
    in `skip`, e.g. transitions, give no windows).

    Returns (windows (n, WINDOW, channels), labels (n,), start sample index (n,)).
    """
    labels = np.asarray(labels)
    windows, out, starts = [], [], []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    for begin, end in zip(np.r_[0, change], np.r_[change, len(labels)]):
        if labels[begin] in skip:
            continue
        for start in range(begin, end - WINDOW + 1, STEP):
            windows.append(signals[start:start + WINDOW])
            out.append(labels[begin])
            starts.append(start)
    if not windows:
        return np.empty((0, WINDOW, len(CHANNELS))), labels[:0], np.empty(0, np.int64)
    return np.stack(windows), np.asarray(out), np.asarray(starts)


def featurize(windows: np.ndarray, pipeline: list[dict] | None = None) -> np.ndarray:
    """Windows (n, WINDOW, channels) -> features (n, N_FEATURES), all windows at once."""
    windows = np.asarray(windows, dtype=np.float64)
    pipeline = PIPELINE if pipeline is None else pipeline
    if len(windows) == 0:
        return np.empty((0, len(feature_ops.feature_names(pipeline))))
    if windows.shape[1:] != (WINDOW, len(CHANNELS)):
        raise ValueError(f"a window is ({WINDOW}, {len(CHANNELS)}) samples x channels, got {windows.shape[1:]}")
    channels = {name: windows[:, :, i] for i, name in enumerate(CHANNELS)}
    return feature_ops.run(pipeline, channels, SAMPLE_RATE_HZ)


def featurize_window(window: np.ndarray) -> np.ndarray:
    """One raw window (WINDOW, channels) -> feature vector (N_FEATURES,), in FEATURE_NAMES order."""
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (WINDOW, len(CHANNELS)):
        raise ValueError(f"a window is ({WINDOW}, {len(CHANNELS)}) samples x channels, got {window.shape}")
    return featurize(window[None])[0]


def feature_bounds() -> dict[str, tuple[float, float]]:
    """Plausible [lo, hi] of every feature (FEATURE_NAMES order), derived from CHANNEL_BOUNDS step by step."""
    return feature_ops.bounds(PIPELINE, CHANNEL_BOUNDS, WINDOW, SAMPLE_RATE_HZ)


def feature_spec() -> dict:
    """Every step and constant of the featurization, for the device side to implement."""
    sensor = TASK.inputs.kind == "sensor"
    layout = ("window[t][c]: sample t = 0..window_samples-1 in time order, channel c in `channels` order" if sensor else
              "window[0][c]: one row, column c in `channels` order (a tabular example is a window of one sample)")
    spec = {
        "version": 3,
        "task": TASK.tag,
        "input": {
            "kind": TASK.inputs.kind,
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "window_samples": WINDOW,
            "step_samples": STEP,
            "channels": list(CHANNELS),
            "units": dict(UNITS),
            "layout": layout,
        },
        "arithmetic": "IEEE-754 double precision throughout; every series is a 1-D array over the window's samples",
        "pipeline": ("run `steps` in order. The window's channels are the first named series. A step of kind 'series' "
                     "adds its `outputs` as new series; a step of kind 'features' appends its `outputs` (scalars) to "
                     "the feature vector, in the order listed. n in a definition is the length of the series it reads "
                     "(window_samples, or window_samples - 1 after jerk)."),
        "steps": feature_ops.spec(PIPELINE, WINDOW, SAMPLE_RATE_HZ),
        "model_input": "the feature vector in feature_names order; standardization ((x - mean) / std) is inside the "
                       "Core ML model: the app feeds raw features",
        "feature_names": list(FEATURE_NAMES),
        "n_features": N_FEATURES,
    }
    if sensor:
        spec["input"]["windowing"] = "a window lies inside one run of a single label; starts every step_samples"
    if CLASSIFICATION:
        spec["labels"] = list(CLASSES)
    else:
        spec["target"] = TASK.target.model_dump()
    return spec
