"""A series' latest sample as a feature: a tabular column passed through (a row is one sample)."""

from __future__ import annotations

OP = "value"
KIND = "features"
VERSION = 1


def names(step: dict) -> list[str]:
    return list(step["inputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    return {s: series[s][..., -1] for s in step["inputs"]}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {s: (-series[s], series[s]) for s in step["inputs"]}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION, "definition": "x[n-1]: the series' last sample (a tabular row's only value)",
            "naming": "<series>", "cost_per_window": "none: a copy"}
