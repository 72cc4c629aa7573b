"""log(1 + x) of each input series: compresses a skewed non-negative quantity (money, counts)."""

from __future__ import annotations

import math

import numpy as np

OP = "log1p"
KIND = "series"
VERSION = 1


def names(step: dict) -> list[str]:
    return list(step["outputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    # inputs below 0 are clipped to 0 first: validation already holds them within their declared range
    return {out: np.log1p(np.maximum(series[s], 0.0)) for s, out in zip(step["inputs"], step["outputs"])}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {out: math.log1p(series[s]) for s, out in zip(step["inputs"], step["outputs"])}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION,
            "definition": "per sample, for each input (in order) into the output of the same position: "
                          "log(1 + max(x, 0)), natural logarithm (Foundation's log1p)",
            "cost_per_window": "1 log1p per sample and input"}
