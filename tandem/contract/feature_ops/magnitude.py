"""Euclidean magnitude of a 3-axis series: orientation-free."""

from __future__ import annotations

import math

import numpy as np

OP = "magnitude"
KIND = "series"
VERSION = 1


def names(step: dict) -> list[str]:
    return list(step["outputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    x, y, z = (series[s] for s in step["inputs"])
    return {step["outputs"][0]: np.sqrt(x * x + y * y + z * z)}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {step["outputs"][0]: math.sqrt(3.0) * max(series[s] for s in step["inputs"])}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION, "definition": "per sample: sqrt(x*x + y*y + z*z) of the three inputs (x, y, z in order)",
            "cost_per_window": "3 multiplies, 2 adds, 1 square root per sample: about 6*n flops"}
