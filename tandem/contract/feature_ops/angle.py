"""Angle between the mean of a 3-axis series (e.g. gravity) and the device axes: the phone's posture."""

from __future__ import annotations

import math

import numpy as np

OP = "angle"
KIND = "features"
VERSION = 1
AXES = ("x", "y", "z")


def names(step: dict) -> list[str]:
    return [f"{step['params']['name']}_angle_{a}" for a in AXES]


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    m = np.stack([series[s].mean(axis=-1) for s in step["inputs"]], axis=-1)
    norm = np.sqrt((m * m).sum(axis=-1))
    out = {}
    for i, name in enumerate(names(step)):
        c = np.where(norm > 0, m[..., i] / np.where(norm > 0, norm, 1.0), 0.0)
        out[name] = np.arccos(np.clip(c, -1.0, 1.0))
    return out


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {name: (0.0, math.pi) for name in names(step)}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    return {"version": VERSION,
            "definition": ("m = (mean(x), mean(y), mean(z)) of the three inputs; |m| = sqrt(m.m); for axis a in x, y, z: "
                           "acos(clamp(m_a / |m|, -1, 1)) in radians; pi/2 (acos 0) when |m| = 0"),
            "naming": "<name>_angle_x, _y, _z", "cost_per_window": "3 means (3*n adds) + 3 acos"}
