"""Frequency domain of a series: dominant frequency, spectral entropy, log band energies."""

from __future__ import annotations

import math

import numpy as np

OP = "spectrum"
KIND = "features"
VERSION = 1
ENERGY_FLOOR = 1e-6  # inside the log: a silent band stays finite


def names(step: dict) -> list[str]:
    bands = step["params"]["bands"]
    return [n for s in step["inputs"]
            for n in (f"{s}_dominant_hz", f"{s}_entropy", *(f"{s}_band{i}" for i in range(len(bands))))]


def power(x: np.ndarray) -> np.ndarray:
    """P[k] = |X[k]|^2 / n^2 for k = 0..n/2, X the DFT of the mean-removed series."""
    n = x.shape[-1]
    d = x - x.mean(axis=-1, keepdims=True)
    X = np.fft.rfft(d, axis=-1)
    return (X.real ** 2 + X.imag ** 2) / float(n * n)


def apply(step: dict, series: dict, sample_rate_hz: float) -> dict:
    out = {}
    for s in step["inputs"]:
        x = series[s]
        n = x.shape[-1]
        P = power(x)[..., 1:]  # bins 1..n/2: the mean (bin 0) is removed
        k = np.argmax(P, axis=-1) + 1  # first maximum
        out[f"{s}_dominant_hz"] = k * (sample_rate_hz / n)
        total = P.sum(axis=-1)
        p = P / np.where(total > 0, total, 1.0)[..., None]
        ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1) / math.log(P.shape[-1])
        out[f"{s}_entropy"] = np.where(total > 0, ent, 0.0)
        full = power(x)
        for i, (lo, hi) in enumerate(step["params"]["bands"]):
            out[f"{s}_band{i}"] = np.log(full[..., lo:hi + 1].sum(axis=-1) + ENERGY_FLOOR)
    return out


def bounds(step: dict, series: dict, window: int, sample_rate_hz: float) -> dict:
    out = {}
    for s in step["inputs"]:
        b = series[s]
        out[f"{s}_dominant_hz"] = (sample_rate_hz / window, sample_rate_hz / 2)
        out[f"{s}_entropy"] = (0.0, 1.0 + 1e-9)
        for i in range(len(step["params"]["bands"])):  # sum of P[1..n/2] <= variance <= b^2 (Parseval)
            out[f"{s}_band{i}"] = (math.log(ENERGY_FLOOR), math.log(b * b + ENERGY_FLOOR))
    return out


def spec(step: dict, window: int, sample_rate_hz: float) -> dict:
    n = window
    bands = step["params"]["bands"]
    return {
        "version": VERSION,
        "power": ("d[t] = x[t] - mean(x) for t = 0..n-1 (no window function, no zero padding, n = the series' length); "
                  "X[k] = sum_t d[t] * exp(-2*pi*i*k*t/n) (plain DFT, no scaling); P[k] = (Re X[k]^2 + Im X[k]^2) / n^2 "
                  "for k = 0..n/2 (one-sided, not doubled). Bin k is k*sample_rate_hz/n Hz. Note: vDSP's real FFT returns "
                  "2*X[k] in its packed format: divide by 2 first."),
        "features": {
            "dominant_hz": "k* * sample_rate_hz / n where k* is the first k in 1..n/2 with the largest P[k]",
            "entropy": ("p[k] = P[k] / S over k = 1..n/2 with S = sum of those P[k]; -sum(p[k]*ln p[k]) / ln(n/2), terms "
                        "with p[k] = 0 count 0; 0 when S = 0"),
            "band<i>": f"ln(sum of P[k] for k = lo..hi inclusive + {ENERGY_FLOOR}) with [lo, hi] = bands[i] (bin indices)",
        },
        "bands_hz": [[lo * sample_rate_hz / n, hi * sample_rate_hz / n] for lo, hi in bands],
        "order": "for each input series: dominant_hz, entropy, band0, band1, ...",
        "naming": "<series>_dominant_hz, <series>_entropy, <series>_band<i>",
        "cost_per_window": (f"one real FFT of n = {n} points (about 2.5*n*log2(n) = {int(2.5 * n * math.log2(n))} flops) "
                            "+ ~6*n for power, entropy and bands, per series"),
    }
