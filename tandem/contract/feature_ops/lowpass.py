"""Low-pass filter: a 2nd-order Butterworth IIR, e.g. the slow (gravity) part of an acceleration."""

from __future__ import annotations

import math

import numpy as np

OP = "lowpass"
KIND = "series"
VERSION = 1
BOUND_GAIN = 1.5  # > the filter's peak |output| / |input| (l1 norm of its impulse response, ~1.09)


def coefficients(cutoff_hz: float, sample_rate_hz: float) -> tuple[float, float, float, float, float]:
    """(b0, b1, b2, a1, a2) by the bilinear transform with the cutoff pre-warped."""
    k = math.tan(math.pi * cutoff_hz / sample_rate_hz)
    norm = 1.0 / (1.0 + math.sqrt(2.0) * k + k * k)
    b0 = k * k * norm
    return b0, 2.0 * b0, b0, 2.0 * (k * k - 1.0) * norm, (1.0 - math.sqrt(2.0) * k + k * k) * norm


def names(step: dict) -> list[str]:
    return list(step["outputs"])


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    b0, b1, b2, a1, a2 = coefficients(step["params"]["cutoff_hz"], sample_rate_hz)
    out = {}
    for src, dst in zip(step["inputs"], step["outputs"]):
        x = series[src]
        start = x.mean(axis=-1)  # the filter starts at rest on the window's mean: no start-up transient
        z1, z2 = (1.0 - b0) * start, (b2 - a2) * start
        y = np.empty_like(x)
        for t in range(x.shape[-1]):
            xt = x[..., t]
            yt = b0 * xt + z1
            z1 = b1 * xt - a1 * yt + z2
            z2 = b2 * xt - a2 * yt
            y[..., t] = yt
        out[dst] = y
    return out


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    return {dst: BOUND_GAIN * series[src] for src, dst in zip(step["inputs"], step["outputs"])}


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    fc = step["params"]["cutoff_hz"]
    b0, b1, b2, a1, a2 = coefficients(fc, sample_rate_hz)
    return {
        "version": VERSION,
        "definition": (
            "Each output is its input (same index) filtered by a 2nd-order Butterworth low-pass with cutoff "
            "cutoff_hz at sample_rate_hz, run over the window's samples t = 0..n-1 in time order in direct form II "
            "transposed: y[t] = b0*x[t] + z1; z1 = b1*x[t] - a1*y[t] + z2; z2 = b2*x[t] - a2*y[t] (z1, z2 updated "
            "with the old z2 and the new y[t], in that order). Coefficients: K = tan(pi*cutoff_hz/sample_rate_hz), "
            "N = 1/(1 + sqrt(2)*K + K^2), b0 = K^2*N, b1 = 2*b0, b2 = b0, a1 = 2*(K^2 - 1)*N, "
            "a2 = (1 - sqrt(2)*K + K^2)*N."),
        "initial_state": ("the filter at rest on the window's mean m = sum(x)/n: z1 = (1 - b0)*m, z2 = (b2 - a2)*m "
                          "(a constant input m then gives y = m from the first sample). Each window is filtered on "
                          "its own; no state carries over between windows."),
        "padding": "none: output length = input length = n",
        "coefficients": {"b0": b0, "b1": b1, "b2": b2, "a1": a1, "a2": a2},
        "cost_per_window": "5 multiplies + 4 adds per sample per input: 9*n flops each (n = window samples)",
    }
