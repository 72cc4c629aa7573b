"""The two task kinds behind one interface (`tandem.task.kinds`), and the arithmetic behind a
regressor's device learning rate: why the head's rate needs no change of unit and a body layer's
needs 1/sd^2."""

from __future__ import annotations

import numpy as np
import pytest

from tandem import task as tasks
from tandem.task.kinds import Classification, Regression, kind_of


def test_each_builtin_task_has_its_kind():
    har, grunfeld = kind_of(tasks.resolve("har")), kind_of(tasks.resolve("grunfeld"))
    assert isinstance(har, Classification) and len(har.classes) == 6 and har.higher_is_better
    assert isinstance(grunfeld, Regression) and not grunfeld.higher_is_better and grunfeld.headline == "mae"
    assert har.export_head == "neuralNetworkClassifier" and grunfeld.export_head == "neuralNetworkRegressor"


def test_targets_and_declared_labels():
    kind = Classification(("a", "b", "c"))
    assert kind.targets(["c", "a", "b"]).tolist() == [2, 0, 1]
    assert kind.declared(np.array(["a", "x", "c", None], dtype=object)).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="'x' is not one of"):
        kind.targets(["a", "x"])
    reg = Regression("ms")
    assert reg.targets(["1.5", 2]).dtype == np.float64 and reg.declared([1.0, 2.0]).all()


def test_device_rate_divides_by_the_variance_only_when_a_body_layer_updates():
    reg = Regression("ms")
    assert reg.device_rate(0.01, 70.0, ["head"]) == 0.01
    assert reg.device_rate(0.01, 70.0, ["body.0", "head"]) == pytest.approx(0.01 / 4900)
    assert reg.device_rate(0.01, 1e4, ["body.0", "head"]) == 1e-6  # never below Core ML's floor
    assert Classification(("a", "b")).device_rate(0.01, 70.0, ["body.0", "head"]) == 0.01


def _step(W, b, z, target, lr):
    """One SGD step of mean squared error on a linear head; the new predictions."""
    error = z @ W + b - target
    W2 = W - lr * 2 * z.T @ error / len(z)
    b2 = b - lr * 2 * error.mean(0)
    return z @ W2 + b2


def test_a_folded_head_steps_alike_in_any_unit_and_a_body_gradient_grows_with_the_variance():
    rng = np.random.default_rng(0)
    z = np.abs(rng.normal(size=(20, 5)))  # hidden activations (after ReLU)
    W, b = rng.normal(size=(5, 1)) * 0.3, np.zeros(1)
    sd, mean = 80.0, 400.0  # a target in milliseconds
    y = mean + sd * rng.normal(size=(20, 1))
    lr = 0.01
    standardized = _step(W, b, z, (y - mean) / sd, lr) * sd + mean
    folded = _step(W * sd, b * sd + mean, z, y, lr)  # what the device holds and updates
    assert np.allclose(standardized, folded)  # the head: the same step, whatever the unit

    # a body layer's gradient: d loss / d z through the head, in target units vs standardized
    grad_units = 2 * (z @ (W * sd) + b * sd + mean - y) @ (W * sd).T
    grad_standardized = 2 * (z @ W + b - (y - mean) / sd) @ W.T
    assert np.allclose(grad_units, sd ** 2 * grad_standardized)  # hence the rate / sd^2 for body layers
