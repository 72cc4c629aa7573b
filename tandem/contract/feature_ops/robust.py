"""Robust and shape statistics of a series: interquartile range, median absolute deviation,
skewness, kurtosis."""

from __future__ import annotations

import math

import numpy as np

OP = "robust"
KIND = "features"
VERSION = 1
TINY_VARIANCE = 1e-20  # below it the series is flat: skewness and kurtosis are 0
DEFINITIONS = {
    "iqr": "quantile(x, 0.75) - quantile(x, 0.25)",
    "mad": "quantile(|x - quantile(x, 0.5)|, 0.5)  (median absolute deviation from the median, unscaled)",
    "skewness": "m3 / m2^1.5 with mk = sum((x - mean)^k) / n; 0 when m2 < 1e-20",
    "kurtosis": "m4 / m2^2 - 3 (excess kurtosis, population moments as for skewness); 0 when m2 < 1e-20",
}
QUANTILE = ("quantile(v, q) of n values: sort ascending into s[0..n-1]; h = (n - 1) * q; i = floor(h); "
            "quantile = s[i] + (h - i) * (s[i+1] - s[i]) when i + 1 < n, else s[i] (linear interpolation)")


def names(step: dict) -> list[str]:
    return [f"{s}_{stat}" for s in step["inputs"] for stat in step["params"]["statistics"]]


def _one(x: np.ndarray, stat: str) -> np.ndarray:
    if stat == "iqr":
        q1, q3 = np.quantile(x, [0.25, 0.75], axis=-1)
        return q3 - q1
    if stat == "mad":
        med = np.quantile(x, 0.5, axis=-1)
        return np.quantile(np.abs(x - med[..., None]), 0.5, axis=-1)
    d = x - x.mean(axis=-1, keepdims=True)
    m2 = (d * d).mean(axis=-1)
    flat = m2 < TINY_VARIANCE
    safe = np.where(flat, 1.0, m2)
    if stat == "skewness":
        return np.where(flat, 0.0, (d ** 3).mean(axis=-1) / safe ** 1.5)
    if stat == "kurtosis":
        return np.where(flat, 0.0, (d ** 4).mean(axis=-1) / safe ** 2 - 3.0)
    raise ValueError(f"unknown statistic {stat!r}")


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    return {f"{s}_{stat}": _one(series[s], stat) for s in step["inputs"] for stat in step["params"]["statistics"]}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    n = window
    out = {}
    for s in step["inputs"]:
        b = series[s]
        # |skewness| <= (n-2)/sqrt(n-1) and excess kurtosis <= n - 3 for n samples (population moments)
        per = {"iqr": (0.0, 2 * b), "mad": (0.0, 2 * b), "skewness": (-math.sqrt(n), math.sqrt(n)),
               "kurtosis": (-3.0, float(n))}
        out.update({f"{s}_{stat}": per[stat] for stat in step["params"]["statistics"]})
    return out


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION, "order": "for each input series in order, each statistic in order",
            "statistics": {k: DEFINITIONS[k] for k in step["params"]["statistics"]}, "quantile": QUANTILE,
            "naming": "<series>_<statistic>",
            "cost_per_window": "two sorts of n values (O(n log n), about 2*7*n comparisons) + 3 passes: ~30*n flops per series"}
