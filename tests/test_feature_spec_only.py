"""The featurization implemented from feature_spec.json's text alone, as the Swift side must do it.

Imports nothing of Tandem: it reads tests/fixtures/feature_spec.json (what every release ships) and
reproduces the golden windows' features (tests/fixtures/feature_golden.json, written by the device
golden path; test_feature_ops checks both fixtures are current). Plain Python loops and math, a
naive DFT, hand-written quantiles: a second implementation, not a copy of the reference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def mean(x):
    return sum(x) / len(x)


def quantile(v, q):
    s = sorted(v)
    h = (len(s) - 1) * q
    i = math.floor(h)
    return s[i] + (h - i) * (s[i + 1] - s[i]) if i + 1 < len(s) else s[i]


def lowpass(x, cutoff, fs):
    k = math.tan(math.pi * cutoff / fs)
    n_ = 1 / (1 + math.sqrt(2) * k + k * k)
    b0 = k * k * n_
    b1, b2, a1, a2 = 2 * b0, b0, 2 * (k * k - 1) * n_, (1 - math.sqrt(2) * k + k * k) * n_
    m = mean(x)
    z1, z2 = (1 - b0) * m, (b2 - a2) * m
    y = []
    for xt in x:
        yt = b0 * xt + z1
        z1 = b1 * xt - a1 * yt + z2
        z2 = b2 * xt - a2 * yt
        y.append(yt)
    return y, {"b0": b0, "b1": b1, "b2": b2, "a1": a1, "a2": a2}


def moments(x):
    m = mean(x)
    m2 = sum((v - m) ** 2 for v in x) / len(x)
    m3 = sum((v - m) ** 3 for v in x) / len(x)
    m4 = sum((v - m) ** 4 for v in x) / len(x)
    return m, m2, m3, m4


def stat(x, name):
    if name == "mean":
        return mean(x)
    if name == "std":
        return math.sqrt(moments(x)[1])
    if name == "min":
        return min(x)
    if name == "max":
        return max(x)
    if name == "mad_diff":
        return sum(abs(x[t + 1] - x[t]) for t in range(len(x) - 1)) / (len(x) - 1)
    if name == "iqr":
        return quantile(x, 0.75) - quantile(x, 0.25)
    if name == "mad":
        med = quantile(x, 0.5)
        return quantile([abs(v - med) for v in x], 0.5)
    _, m2, m3, m4 = moments(x)
    if name == "skewness":
        return 0.0 if m2 < 1e-20 else m3 / m2 ** 1.5
    if name == "kurtosis":
        return 0.0 if m2 < 1e-20 else m4 / m2 ** 2 - 3
    raise KeyError(name)


def power(x):
    n = len(x)
    m = mean(x)
    d = [v - m for v in x]
    out = []
    for k in range(n // 2 + 1):
        re = sum(d[t] * math.cos(2 * math.pi * k * t / n) for t in range(n))
        im = -sum(d[t] * math.sin(2 * math.pi * k * t / n) for t in range(n))
        out.append((re * re + im * im) / (n * n))
    return out


def spectrum(x, fs, bands):
    n = len(x)
    P = power(x)
    top = max(P[1:])
    k_star = next(k for k in range(1, n // 2 + 1) if P[k] == top)
    S = sum(P[1:])
    ent = 0.0
    if S > 0:
        ent = -sum((p / S) * math.log(p / S) for p in P[1:] if p > 0) / math.log(n / 2)
    return [k_star * fs / n, ent] + [math.log(sum(P[lo:hi + 1]) + 1e-6) for lo, hi in bands]


def featurize(spec, raw):
    fs = spec["input"]["sample_rate_hz"]
    series = {c: [row[i] for row in raw] for i, c in enumerate(spec["input"]["channels"])}
    out = []
    for step in spec["steps"]:
        op, ins, p = step["op"], step["inputs"], step["params"]
        if op == "lowpass":
            for src, dst in zip(ins, step["outputs"]):
                series[dst], coeffs = lowpass(series[src], p["cutoff_hz"], fs)
                assert coeffs == pytest.approx(step["coefficients"], rel=1e-12)
        elif op == "difference":
            k = len(ins) // 2
            for i, dst in enumerate(step["outputs"]):
                series[dst] = [a - b for a, b in zip(series[ins[i]], series[ins[k + i]])]
        elif op == "jerk":
            for src, dst in zip(ins, step["outputs"]):
                x = series[src]
                series[dst] = [(x[t + 1] - x[t]) * fs for t in range(len(x) - 1)]
        elif op == "magnitude":
            x, y, z = (series[s] for s in ins)
            series[step["outputs"][0]] = [math.sqrt(a * a + b * b + c * c) for a, b, c in zip(x, y, z)]
        elif op in ("stats", "robust"):
            out += [stat(series[s], name) for s in ins for name in p["statistics"]]
        elif op == "spectrum":
            for s in ins:
                out += spectrum(series[s], fs, p["bands"])
        elif op == "angle":
            m = [mean(series[s]) for s in ins]
            norm = math.sqrt(sum(v * v for v in m))
            out += [math.acos(max(-1.0, min(1.0, v / norm))) if norm > 0 else math.pi / 2 for v in m]
        elif op == "correlation":
            for a, b in p["pairs"]:
                ma, mb = mean(series[a]), mean(series[b])
                da, db = [v - ma for v in series[a]], [v - mb for v in series[b]]
                den = math.sqrt(sum(v * v for v in da) * sum(v * v for v in db))
                out.append(sum(u * v for u, v in zip(da, db)) / den if den > 0 else 0.0)
        else:
            raise AssertionError(f"the spec names an op this implementation does not know: {op}")
    return out


def test_spec_alone_reproduces_the_golden_features():
    spec = json.loads((FIXTURES / "feature_spec.json").read_text())
    golden = json.loads((FIXTURES / "feature_golden.json").read_text())
    assert len(golden["windows"]) >= 6
    for i, w in enumerate(golden["windows"]):
        got = featurize(spec, w["raw"])
        assert len(got) == spec["n_features"] == len(w["features"])
        for name, a, b in zip(spec["feature_names"], got, w["features"]):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9), f"window {i} feature {name}"
