"""Difference of two series: body acceleration = acceleration - gravity."""

from __future__ import annotations

OP = "difference"
KIND = "series"
VERSION = 1


def names(step: dict) -> list[str]:
    return list(step["outputs"])


def _pairs(step: dict):
    half = len(step["inputs"]) // 2
    return zip(step["inputs"][:half], step["inputs"][half:], step["outputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    return {dst: series[a] - series[b] for a, b, dst in _pairs(step)}


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {dst: series[a] + series[b] for a, b, dst in _pairs(step)}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION,
            "definition": ("inputs are k minuends then k subtrahends; output i at sample t = inputs[i][t] - "
                           "inputs[k+i][t]"),
            "cost_per_window": "n subtractions per output"}
