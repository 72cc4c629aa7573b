"""The feature library: each op against an independent implementation (scipy), the pipeline as
data, plausible ranges that real data respects, and the committed spec fixtures being current."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal, stats

from tandem import task as tasks
from tandem.contract import feature_ops, features
from tandem.contract.feature_ops import lowpass, robust, spectrum
from tests import feature_fixture as fixture

rng = np.random.default_rng(0)
HAR = features.of(tasks.resolve("har"))


def test_lowpass_is_scipys_butterworth_started_at_rest_on_the_mean():
    b, a = signal.butter(2, 0.3, btype="low", fs=50)
    ours = lowpass.coefficients(0.3, 50)
    assert np.allclose(ours, [b[0], b[1], b[2], a[1], a[2]], rtol=1e-12)
    x = rng.normal(1.0, 0.3, size=(4, 128))
    step = {"op": "lowpass", "inputs": ["x"], "outputs": ["g"], "params": {"cutoff_hz": 0.3}}
    got = lowpass.apply(step, {"x": x}, 50)["g"]
    want = np.stack([signal.lfilter(b, a, row, zi=signal.lfilter_zi(b, a) * row.mean())[0] for row in x])
    assert np.allclose(got, want, atol=1e-12)
    const = np.full((1, 128), 0.98)  # at rest: a constant stays itself from the first sample
    assert np.allclose(lowpass.apply(step, {"x": const}, 50)["g"], 0.98, atol=1e-12)


def test_robust_statistics_match_scipy_and_numpy():
    x = rng.gamma(2.0, size=(3, 128))
    step = {"inputs": ["x"], "params": {"statistics": ["iqr", "mad", "skewness", "kurtosis"]}}
    got = robust.apply(step, {"x": x}, 50)
    assert np.allclose(got["x_iqr"], stats.iqr(x, axis=1))
    assert np.allclose(got["x_mad"], stats.median_abs_deviation(x, axis=1))
    assert np.allclose(got["x_skewness"], stats.skew(x, axis=1))
    assert np.allclose(got["x_kurtosis"], stats.kurtosis(x, axis=1))
    flat = robust.apply(step, {"x": np.ones((1, 128))}, 50)
    assert flat["x_skewness"][0] == 0.0 and flat["x_kurtosis"][0] == 0.0


def test_spectrum_finds_a_sine_and_keeps_parseval():
    t = np.arange(128) / 50
    k = 5  # a sine exactly on bin 5: 5 * 50/128 Hz
    x = np.sin(2 * np.pi * k * 50 / 128 * t)[None]
    step = {"inputs": ["x"], "params": {"bands": [[1, 3], [4, 6], [7, 64]]}}
    got = spectrum.apply(step, {"x": x}, 50)
    assert got["x_dominant_hz"][0] == pytest.approx(k * 50 / 128)
    assert got["x_entropy"][0] == pytest.approx(0.0, abs=1e-9)  # all power in one bin
    assert got["x_band1"][0] > got["x_band0"][0] + 10 and got["x_band1"][0] > got["x_band2"][0] + 10
    noise = rng.normal(size=(1, 128))
    P = spectrum.power(noise)[0]
    full = (np.abs(np.fft.fft(noise[0] - noise[0].mean())) ** 2).sum() / 128 ** 2
    assert P[1:64].sum() * 2 + P[64] == pytest.approx(full)  # one-sided, not doubled
    assert spectrum.apply(step, {"x": noise}, 50)["x_entropy"][0] > 0.8  # white noise: flat spectrum


def test_pipeline_is_data_and_checked():
    assert HAR.n_features == len(set(HAR.feature_names)) == 157
    with pytest.raises(ValueError, match="unknown series"):
        feature_ops.check([{"op": "magnitude", "inputs": ["a", "b", "c"], "outputs": ["m"]}], ("acc_x",))
    with pytest.raises(ValueError, match="unknown feature op"):
        feature_ops.check([{"op": "wavelet", "inputs": []}], ())
    # a different pipeline is just different data
    small = [{"op": "magnitude", "inputs": ["acc_x", "acc_y", "acc_z"], "outputs": ["m"]},
             {"op": "stats", "inputs": ["m"], "params": {"statistics": ["mean", "max"]}}]
    w = rng.normal(size=(2, HAR.window, 6))
    out = HAR.featurize(w, small)
    assert out.shape == (2, 2)
    assert np.allclose(out[:, 0], np.linalg.norm(w[:, :, :3], axis=2).mean(axis=1))


def test_batched_equals_one_window_and_spec_covers_every_step():
    w = rng.normal(size=(3, HAR.window, 6)) * 0.3 + np.array([0, 0, 1, 0, 0, 0])
    batch = HAR.featurize(w)
    assert np.array_equal(batch[1], HAR.featurize_window(w[1]))
    spec = HAR.feature_spec()
    assert [s["op"] for s in spec["steps"]] == [s["op"] for s in HAR.pipeline]
    assert all(s["cost_per_window"] and s["version"] for s in spec["steps"])
    assert sum(len(s["outputs"]) for s in spec["steps"] if s["kind"] == "features") == HAR.n_features


def test_real_windows_stay_within_the_declared_ranges():
    from tandem.builtin_tasks.har.loader import hapt_fleet

    X = np.concatenate([u.features for u in hapt_fleet(users=[1, 2, 3])])
    b = HAR.feature_bounds()
    lo = np.array([b[n][0] for n in HAR.feature_names])
    hi = np.array([b[n][1] for n in HAR.feature_names])
    assert np.isfinite(X).all()
    assert ((X >= lo) & (X <= hi)).all()


def _same(a, b) -> bool:
    """Equal JSON, floats within a few ulps: numpy's releases move a feature's last bit (2.4.6 did,
    in 20 of 1884 features); a stale fixture after a change to an op differs far more."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and bool(np.isclose(a, b, rtol=1e-12, atol=1e-15))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_committed_fixtures_are_current():
    for name, text in fixture.contents().items():
        committed = (Path(fixture.FIXTURES) / name).read_text()
        assert _same(json.loads(committed), json.loads(text)), f"regenerate: python -m tests.feature_fixture ({name})"
    assert not _same({"x": [1.0, 2.0]}, {"x": [1.0, 2.0 + 1e-9]}) and _same([0.1 + 0.2], [0.3])
