"""Windowing and featurization: the one definition both sides use.

The server featurizes shared windows with this module and the device runtime does the same before
Core ML sees a window; `feature_spec()` writes down every step and constant so the Swift side can
implement it, and the release's golden vectors prove it matches. numpy only, float64 throughout.
"""

from __future__ import annotations

import numpy as np

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")  # g and rad/s
SAMPLE_RATE_HZ = 50
WINDOW = 128  # 2.56 s at 50 Hz
STEP = 64  # 50% overlap
ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
HAPT_LABELS = {i + 1: name for i, name in enumerate(ACTIVITIES)}  # HAPT codes 1..6

SERIES = CHANNELS + ("acc_mag", "gyro_mag")
STATISTICS = ("mean", "std", "min", "max", "mad_diff")
CORRELATIONS = (("acc_x", "acc_y"), ("acc_x", "acc_z"), ("acc_y", "acc_z"),
                ("gyro_x", "gyro_y"), ("gyro_x", "gyro_z"), ("gyro_y", "gyro_z"))
FEATURE_NAMES = tuple(f"{s}_{stat}" for s in SERIES for stat in STATISTICS) + tuple(
    f"corr_{a}_{b}" for a, b in CORRELATIONS
)
N_FEATURES = len(FEATURE_NAMES)


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


def _series(window: np.ndarray) -> dict[str, np.ndarray]:
    """The 8 series of one window (WINDOW, 6): the 6 channels and the two vector magnitudes."""
    out = {name: window[:, i] for i, name in enumerate(CHANNELS)}
    out["acc_mag"] = np.sqrt(window[:, 0] ** 2 + window[:, 1] ** 2 + window[:, 2] ** 2)
    out["gyro_mag"] = np.sqrt(window[:, 3] ** 2 + window[:, 4] ** 2 + window[:, 5] ** 2)
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / denom) if denom > 0 else 0.0


def featurize_window(window: np.ndarray) -> np.ndarray:
    """One raw window (WINDOW, 6) -> feature vector (N_FEATURES,), in FEATURE_NAMES order."""
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (WINDOW, len(CHANNELS)):
        raise ValueError(f"a window is ({WINDOW}, {len(CHANNELS)}) samples x channels, got {window.shape}")
    series = _series(window)
    values = []
    for name in SERIES:
        x = series[name]
        values += [x.mean(), x.std(), x.min(), x.max(), np.abs(np.diff(x)).mean()]
    values += [_correlation(series[a], series[b]) for a, b in CORRELATIONS]
    return np.asarray(values, dtype=np.float64)


def featurize(windows: np.ndarray) -> np.ndarray:
    """Windows (n, WINDOW, 6) -> features (n, N_FEATURES)."""
    if len(windows) == 0:
        return np.empty((0, N_FEATURES))
    return np.stack([featurize_window(w) for w in windows])


def feature_spec() -> dict:
    """Every step and constant of the featurization, for the device side to implement."""
    return {
        "version": 1,
        "input": {
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "window_samples": WINDOW,
            "step_samples": STEP,
            "channels": list(CHANNELS),
            "units": {"acc": "g (standard gravity)", "gyro": "rad/s"},
            "windowing": "a window lies inside one run of a single basic activity; starts every step_samples",
        },
        "steps": [
            {"step": "cast", "detail": "all arithmetic in IEEE-754 double precision"},
            {"step": "magnitude", "outputs": ["acc_mag", "gyro_mag"],
             "detail": "sqrt(x*x + y*y + z*z) per sample, of acc_x..acc_z and of gyro_x..gyro_z"},
            {"step": "statistics", "series": list(SERIES), "statistics": {
                "mean": "sum(x) / n",
                "std": "sqrt(sum((x - mean)^2) / n)  (population: divide by n, not n-1)",
                "min": "min(x)",
                "max": "max(x)",
                "mad_diff": "sum(|x[t+1] - x[t]|, t=0..n-2) / (n - 1)",
            }, "order": "for each series in order, each statistic in order"},
            {"step": "correlation", "pairs": [list(p) for p in CORRELATIONS],
             "detail": "Pearson: sum(da*db) / sqrt(sum(da^2) * sum(db^2)) with da = a - mean(a); 0 when the denominator is 0"},
            {"step": "standardize", "detail": "inside the Core ML model: (x - mean) / std with the release's constants; the app feeds raw features"},
        ],
        "feature_names": list(FEATURE_NAMES),
        "n_features": N_FEATURES,
        "labels": list(ACTIVITIES),
    }
