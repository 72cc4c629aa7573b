"""Pearson correlation between two series of one window."""

from __future__ import annotations

import numpy as np

OP = "correlation"
KIND = "features"
VERSION = 1
SLACK = 1e-9  # float64 Pearson can land an ulp outside [-1, 1]


def names(step: dict) -> list[str]:
    return [f"corr_{a}_{b}" for a, b in step["params"]["pairs"]]


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    out = {}
    for a, b in step["params"]["pairs"]:
        da = series[a] - series[a].mean(axis=-1, keepdims=True)
        db = series[b] - series[b].mean(axis=-1, keepdims=True)
        denom = np.sqrt((da * da).sum(axis=-1) * (db * db).sum(axis=-1))
        out[f"corr_{a}_{b}"] = np.where(denom > 0, (da * db).sum(axis=-1) / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {n: (-1.0 - SLACK, 1.0 + SLACK) for n in names(step)}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION,
            "definition": ("sum(da*db) / sqrt(sum(da^2) * sum(db^2)) with da = a - mean(a), db = b - mean(b); "
                           "0 when the denominator is 0"),
            "naming": "corr_<a>_<b>", "cost_per_window": "about 8*n flops per pair"}
