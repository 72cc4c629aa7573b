"""Windowing and featurization: the one definition both sides use.

The server featurizes shared windows with this module and the device runtime does the same before
Core ML sees a window. The featurization is `PIPELINE`, a list of named steps from the feature
operation library (`tandem.contract.feature_ops`): gravity/body separation, jerk, magnitudes, moments, robust
statistics, spectra, posture angles and correlations, after the literature's HAR features (Anguita
et al. 2013) but compact enough for a phone. `feature_spec()` writes down every step and constant so
the Swift side can implement it; the release's golden vectors prove it matches. numpy only, float64.
"""

from __future__ import annotations

import numpy as np

from tandem.contract import feature_ops

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")  # g and rad/s
SAMPLE_RATE_HZ = 50
WINDOW = 128  # 2.56 s at 50 Hz
STEP = 64  # 50% overlap
ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
HAPT_LABELS = {i + 1: name for i, name in enumerate(ACTIVITIES)}  # HAPT codes 1..6
CHANNEL_BOUNDS = {"acc_x": 16.0, "acc_y": 16.0, "acc_z": 16.0,  # max |value| a phone reports: g, rad/s
                  "gyro_x": 35.0, "gyro_y": 35.0, "gyro_z": 35.0}


def _xyz(prefix: str) -> list[str]:
    return [f"{prefix}_{a}" for a in "xyz"]


ACC, GYRO, GRAVITY, BODY = _xyz("acc"), _xyz("gyro"), _xyz("gravity"), _xyz("body")
MAGNITUDES = ["body_mag", "gyro_mag", "body_jerk_mag", "gyro_jerk_mag"]
# Spectrum bands as bin indices of the 128-point DFT (bin k = k * 50/128 Hz): ~0.4-1.2 Hz (sway),
# 1.6-2.3 Hz (steps), 2.7-4.7 Hz (step harmonics, stairs), 5.1-9.4 Hz, 9.8-25 Hz (impacts, noise).
BANDS = [[1, 3], [4, 6], [7, 12], [13, 24], [25, 64]]

PIPELINE: list[dict] = [
    {"op": "lowpass", "inputs": ACC, "outputs": GRAVITY, "params": {"cutoff_hz": 0.3}},
    {"op": "difference", "inputs": ACC + GRAVITY, "outputs": BODY},
    {"op": "jerk", "inputs": BODY + GYRO, "outputs": _xyz("body_jerk") + _xyz("gyro_jerk")},
    {"op": "magnitude", "inputs": BODY, "outputs": ["body_mag"]},
    {"op": "magnitude", "inputs": GYRO, "outputs": ["gyro_mag"]},
    {"op": "magnitude", "inputs": _xyz("body_jerk"), "outputs": ["body_jerk_mag"]},
    {"op": "magnitude", "inputs": _xyz("gyro_jerk"), "outputs": ["gyro_jerk_mag"]},
    {"op": "stats", "inputs": GRAVITY + BODY + GYRO + MAGNITUDES,
     "params": {"statistics": ["mean", "std", "min", "max"]}},
    {"op": "robust", "inputs": BODY + GYRO + MAGNITUDES,
     "params": {"statistics": ["iqr", "mad", "skewness", "kurtosis"]}},
    {"op": "spectrum", "inputs": BODY + GYRO + ["body_mag", "gyro_mag"], "params": {"bands": BANDS}},
    {"op": "angle", "inputs": GRAVITY, "params": {"name": "gravity"}},
    {"op": "correlation", "inputs": BODY + GYRO,
     "params": {"pairs": [["body_x", "body_y"], ["body_x", "body_z"], ["body_y", "body_z"],
                          ["gyro_x", "gyro_y"], ["gyro_x", "gyro_z"], ["gyro_y", "gyro_z"]]}},
]
feature_ops.check(PIPELINE, CHANNELS)

FEATURE_NAMES = feature_ops.feature_names(PIPELINE)
N_FEATURES = len(FEATURE_NAMES)
# What validation and the privacy policy iterate over: the series with min/max statistics, those
# statistics, and the correlation pairs.
SERIES = tuple(next(s for s in PIPELINE if s["op"] == "stats")["inputs"])
STATISTICS = tuple(next(s for s in PIPELINE if s["op"] == "stats")["params"]["statistics"])
CORRELATIONS = tuple(tuple(p) for p in next(s for s in PIPELINE if s["op"] == "correlation")["params"]["pairs"])


def label_indices(labels, classes=ACTIVITIES) -> np.ndarray:
    """Class names -> their indices in `classes` (the model's class order); a name outside it raises."""
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.array([index[str(label)] for label in labels], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]!r} is not one of {list(classes)}") from None


def cut_windows(signals: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of WINDOW samples every STEP samples, each inside one run of a basic activity.

    Returns (windows (n, WINDOW, 6), HAPT label codes (n,), start sample index (n,)).
    """
    windows, codes, starts = [], [], []
    change = np.flatnonzero(np.diff(labels)) + 1
    for begin, end in zip(np.r_[0, change], np.r_[change, len(labels)]):
        code = int(labels[begin])
        if code not in HAPT_LABELS:
            continue
        for start in range(begin, end - WINDOW + 1, STEP):
            windows.append(signals[start:start + WINDOW])
            codes.append(code)
            starts.append(start)
    if not windows:
        return np.empty((0, WINDOW, len(CHANNELS))), np.empty(0, np.int64), np.empty(0, np.int64)
    return np.stack(windows), np.asarray(codes), np.asarray(starts)


def featurize(windows: np.ndarray, pipeline: list[dict] | None = None) -> np.ndarray:
    """Windows (n, WINDOW, 6) -> features (n, N_FEATURES), all windows at once."""
    windows = np.asarray(windows, dtype=np.float64)
    pipeline = PIPELINE if pipeline is None else pipeline
    if len(windows) == 0:
        return np.empty((0, len(feature_ops.feature_names(pipeline))))
    if windows.shape[1:] != (WINDOW, len(CHANNELS)):
        raise ValueError(f"a window is ({WINDOW}, {len(CHANNELS)}) samples x channels, got {windows.shape[1:]}")
    channels = {name: windows[:, :, i] for i, name in enumerate(CHANNELS)}
    return feature_ops.run(pipeline, channels, SAMPLE_RATE_HZ)


def featurize_window(window: np.ndarray) -> np.ndarray:
    """One raw window (WINDOW, 6) -> feature vector (N_FEATURES,), in FEATURE_NAMES order."""
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (WINDOW, len(CHANNELS)):
        raise ValueError(f"a window is ({WINDOW}, {len(CHANNELS)}) samples x channels, got {window.shape}")
    return featurize(window[None])[0]


def feature_bounds() -> dict[str, tuple[float, float]]:
    """Plausible [lo, hi] of every feature (FEATURE_NAMES order), derived from CHANNEL_BOUNDS step by step."""
    return feature_ops.bounds(PIPELINE, CHANNEL_BOUNDS, WINDOW, SAMPLE_RATE_HZ)


def feature_spec() -> dict:
    """Every step and constant of the featurization, for the device side to implement."""
    return {
        "version": 2,
        "input": {
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "window_samples": WINDOW,
            "step_samples": STEP,
            "channels": list(CHANNELS),
            "units": {"acc": "g (standard gravity), gravity included (not user acceleration)", "gyro": "rad/s"},
            "layout": "window[t][c]: sample t = 0..window_samples-1 in time order, channel c in `channels` order",
            "windowing": "a window lies inside one run of a single basic activity; starts every step_samples",
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
        "labels": list(ACTIVITIES),
    }
