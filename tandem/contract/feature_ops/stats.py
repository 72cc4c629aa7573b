"""Moments and extremes of a series: mean, std, min, max, mad_diff."""

from __future__ import annotations

import numpy as np

OP = "stats"
KIND = "features"
VERSION = 1
DEFINITIONS = {
    "mean": "sum(x) / n",
    "std": "sqrt(sum((x - mean)^2) / n)  (population: divide by n, not n-1)",
    "min": "min(x)",
    "max": "max(x)",
    "mad_diff": "sum(|x[t+1] - x[t]|, t = 0..n-2) / (n - 1)",
}


def names(step: dict) -> list[str]:
    return [f"{s}_{stat}" for s in step["inputs"] for stat in step["params"]["statistics"]]


def _one(x: np.ndarray, stat: str) -> np.ndarray:
    if stat == "mean":
        return x.mean(axis=-1)
    if stat == "std":
        return x.std(axis=-1)
    if stat == "min":
        return x.min(axis=-1)
    if stat == "max":
        return x.max(axis=-1)
    if stat == "mad_diff":
        return np.abs(np.diff(x, axis=-1)).mean(axis=-1)
    raise ValueError(f"unknown statistic {stat!r}")


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    return {f"{s}_{stat}": _one(series[s], stat) for s in step["inputs"] for stat in step["params"]["statistics"]}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    out = {}
    for s in step["inputs"]:
        b = series[s]
        per = {"mean": (-b, b), "std": (0.0, b), "min": (-b, b), "max": (-b, b), "mad_diff": (0.0, 2 * b)}
        out.update({f"{s}_{stat}": per[stat] for stat in step["params"]["statistics"]})
    return out


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION, "order": "for each input series in order, each statistic in order",
            "statistics": {k: DEFINITIONS[k] for k in step["params"]["statistics"]},
            "naming": "<series>_<statistic>", "cost_per_window": "one pass (two for std): about 4*n flops per series"}
