"""Jerk: the first difference of a series times the sample rate (units per second)."""

from __future__ import annotations

import numpy as np

OP = "jerk"
KIND = "series"
VERSION = 1


def names(step: dict) -> list[str]:
    return list(step["outputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    return {dst: np.diff(series[src], axis=-1) * float(sample_rate_hz)
            for src, dst in zip(step["inputs"], step["outputs"])}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {dst: 2.0 * series[src] * sample_rate_hz for src, dst in zip(step["inputs"], step["outputs"])}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION,
            "definition": "j[t] = (x[t+1] - x[t]) * sample_rate_hz for t = 0..n-2",
            "padding": "none: the output has n-1 samples",
            "cost_per_window": "n-1 subtractions and multiplies per input"}
