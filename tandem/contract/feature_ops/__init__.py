"""The feature operation library: featurization as a pipeline of named steps.

A pipeline is data: a list of steps ``{"op": <name>, "inputs": [...], "outputs": [...], "params": {...}}``
run in order over named series (the window's channels first). A *series* op (lowpass, difference,
magnitude, jerk, log1p) adds series; a *feature* op (stats, robust, spectrum, angle, correlation, value) adds
scalar features, named by the op (``outputs`` is then left out). The feature vector is the feature
ops' outputs in step order.

Every op is one module with one numpy float64 reference (`apply`, batched over leading axes: series
are arrays (..., n)), the names it adds (`names`), a plausible range per output (`bounds`, from the
inputs' bounds: GX and the DP clip use them) and `spec`, its own entry of ``feature_spec.json``,
precise enough to implement it from the text alone, with its cost per window.
"""

from __future__ import annotations

import copy
from types import ModuleType

import numpy as np

from tandem.contract.feature_ops import (
    angle,
    correlation,
    difference,
    jerk,
    log1p,
    lowpass,
    magnitude,
    robust,
    spectrum,
    stats,
    value,
)

OPS: dict[str, ModuleType] = {m.OP: m for m in (lowpass, difference, magnitude, jerk, log1p, stats, robust, spectrum,
                                                 angle, correlation, value)}


def _op(step: dict) -> ModuleType:
    try:
        return OPS[step["op"]]
    except KeyError:
        raise ValueError(f"unknown feature op {step.get('op')!r}: the library has {sorted(OPS)}") from None


def check(pipeline: list[dict], channels: tuple[str, ...]) -> None:
    """Every step names a known op and reads only series that exist by then; no name is produced twice."""
    series, features = set(channels), set()
    for i, step in enumerate(pipeline):
        op = _op(step)
        missing = [s for s in step["inputs"] if s not in series]
        if missing:
            raise ValueError(f"step {i} ({step['op']}) reads unknown series {missing}")
        out = op.names(step)
        target = series if op.KIND == "series" else features
        clash = [n for n in out if n in target]
        if clash:
            raise ValueError(f"step {i} ({step['op']}) produces {clash} twice")
        target.update(out)


def feature_names(pipeline: list[dict]) -> tuple[str, ...]:
    return tuple(n for step in pipeline if _op(step).KIND == "features" for n in _op(step).names(step))


def run(pipeline: list[dict], channels: dict[str, np.ndarray], sample_rate_hz: float) -> np.ndarray:
    """Channels {name: (..., n)} -> features (..., n_features), float64."""
    series = {k: np.asarray(v, dtype=np.float64) for k, v in channels.items()}
    out = []
    for step in pipeline:
        op = _op(step)
        produced = op.apply(step, series, sample_rate_hz)
        if op.KIND == "series":
            series.update(produced)
        else:
            out += [produced[n] for n in op.names(step)]
    return np.stack(out, axis=-1)


def bounds(pipeline: list[dict], channel_bounds: dict[str, float], window: int,
           sample_rate_hz: float) -> dict[str, tuple[float, float]]:
    """Plausible [lo, hi] of every feature, in feature order, from the channels' max |value|."""
    series = dict(channel_bounds)
    out: dict[str, tuple[float, float]] = {}
    for step in pipeline:
        op = _op(step)
        produced = op.bounds(step, series, window, sample_rate_hz)
        (series if op.KIND == "series" else out).update(produced)
    return out


def spec(pipeline: list[dict], window: int, sample_rate_hz: float) -> list[dict]:
    """Each step's entry of feature_spec.json, in order."""
    entries = []
    for step in pipeline:
        op = _op(step)
        entry = {"op": step["op"], "kind": op.KIND, "inputs": list(step["inputs"]),
                 "params": copy.deepcopy(step.get("params", {})), "outputs": list(op.names(step))}
        entry.update(op.spec(step, window, sample_rate_hz))
        entries.append(entry)
    return entries
