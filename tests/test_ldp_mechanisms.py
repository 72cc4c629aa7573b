"""The local DP form's parts: unbiased, epsilon-bounded, exact and deterministic sampling; the
server's debiasing; the per-window events the accountant charges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tandem.privacy import ldp_mechanisms as ldp


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_piecewise_cells_respect_epsilon_for_any_two_inputs(eps):
    masses = [ldp.piecewise_cells(z, eps)[1] for z in (-1.0, -0.3, 0.0, 0.7, 1.0)]
    for a in masses:
        assert a.sum() == pytest.approx(1.0)
        for b in masses:
            assert (a / b).max() <= math.exp(eps) * (1 + 1e-12)
    centres = ldp.piecewise_cells(0.2, eps)[0]
    assert np.array_equal(centres, ldp.piecewise_cells(-0.9, eps)[0])  # the output set does not depend on the input


@pytest.mark.parametrize("mechanism", ["piecewise", "duchi"])
def test_mechanisms_are_unbiased(mechanism):
    rng = ldp.KeyedStream(b"key", "unbiased")
    for z in (-0.8, 0.4):
        draws = np.array([ldp.MECHANISMS[mechanism](z, 1.0, rng) for _ in range(6000)])
        assert abs(draws.mean() - z) < 4 * draws.std() / math.sqrt(len(draws)), (mechanism, z, draws.mean())
    if mechanism == "duchi":
        assert set(np.abs(draws).round(9)) == {round(ldp.duchi_bound(1.0), 9)}  # two values only


def test_keyed_stream_is_deterministic_uniform_and_keyed():
    a = [ldp.KeyedStream(b"k", "w1").randbelow(6) for _ in range(1)]
    assert a == [ldp.KeyedStream(b"k", "w1").randbelow(6)]
    s = ldp.KeyedStream(b"k", "uniform")
    counts = np.bincount([s.randbelow(6) for _ in range(6000)], minlength=6)
    assert counts.min() > 850 and counts.max() < 1150
    one = [ldp.KeyedStream(b"k", "x").randbelow(2**40) for _ in range(3)]
    other = [ldp.KeyedStream(b"other", "x").randbelow(2**40) for _ in range(3)]
    assert one != other
    assert sorted(ldp.KeyedStream(b"k", "s").sample(46, 5)) == ldp.KeyedStream(b"k", "s").sample(46, 5)


def test_window_release_samples_k_coordinates_and_debiasing_recovers_class_means():
    rng = np.random.default_rng(0)
    d, classes, n = 6, 3, 6000
    true_means = np.array([[-0.5] * d, [0.0] * d, [0.5] * d])
    y = rng.integers(classes, size=n)
    Z = np.clip(true_means[y] + rng.normal(0, 0.1, (n, d)), -1, 1)
    cfg = ldp.LdpConfig("piecewise", epsilon_features=6.0, epsilon_labels=2.0, k=2)
    out_z, out_y = np.empty_like(Z), np.empty(n, dtype=np.int64)
    for i in range(n):
        out_z[i], out_y[i] = ldp.privatize_window(Z[i], int(y[i]), cfg, classes, ldp.KeyedStream(b"k", f"w{i}"))
    assert ((out_z != 0).sum(1) == 2).all()  # k of d coordinates reported, the rest 0
    kept = (out_y == y).mean()
    assert abs(kept - ldp.rr_keep(2.0, classes)) < 0.03
    naive = np.array([out_z[out_y == c].mean(0) for c in range(classes)])
    cm = ldp.debias(out_z, out_y, cfg, classes)
    assert np.abs(cm.mean - true_means).max() < 0.12
    assert np.abs(cm.mean - true_means).mean() < np.abs(naive - true_means).mean()  # the labels' noise undone
    assert cm.prior == pytest.approx([1 / 3] * 3, abs=0.05)


def test_window_events_are_pure_plus_randomized_response():
    cfg = ldp.LdpConfig("duchi", epsilon_features=1.5, epsilon_labels=0.5)
    features, labels = cfg.window_events(6)
    assert features["mechanism"] == "pure" and features["epsilon"] == pytest.approx(1.5)
    assert labels == {"mechanism": "randomized_response", "epsilon": pytest.approx(0.5), "classes": 6}
    assert cfg.coordinates(46) == 1 and ldp.LdpConfig(epsilon_features=10.0).coordinates(46) == 4
