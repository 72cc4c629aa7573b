"""On-device update: loss falls, only updatable parameters move, the spec's limits hold."""

from __future__ import annotations

import numpy as np
import pytest
from device_builders import LABELS, D, classifier_spec, pipeline_spec, random_weights, regressor_spec

from tandem.device.rules import check
from tandem.device.runtime import DeviceModel, inner_product_params
from tandem.device.update import (
    evaluate_loss,
    resolve_params,
    updatable_weights,
    update,
)


def task(seed=0, n=96):
    """Labels a fixed random rule assigns, so a personal model can learn them."""
    rng = np.random.default_rng(seed)
    w = random_weights(seed)
    X = w["mean"] + w["std"] * rng.normal(size=(n, D))
    z = (X - w["mean"]) / w["std"]
    y = np.asarray(LABELS)[(z[:, :6] * np.arange(1, 7)).argmax(1)]
    return w, X, y


def layer_weights(model):
    return {l.name: inner_product_params(l) for l in model.spec.neuralNetworkClassifier.layers
            if l.WhichOneof("layer") == "innerProduct"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_update_reduces_loss_and_touches_only_updatable(optimizer):
    w, X, y = task()
    base = DeviceModel.load(classifier_spec(w=w, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01))
    r = update(base, X, y, epochs=10)
    assert r.params.optimizer == optimizer and r.params.epochs == 10 and len(r.history) == 10
    assert r.loss_after < r.loss_before and r.history[-1] < r.history[0]
    assert abs(evaluate_loss(r.model, X, y) - r.loss_after) < 1e-12
    assert abs(evaluate_loss(base, X, y) - r.loss_before) < 1e-12
    before, after = layer_weights(base), layer_weights(r.model)
    for name in ("dense0", "dense1"):
        np.testing.assert_array_equal(before[name][0], after[name][0])
        np.testing.assert_array_equal(before[name][1], after[name][1])
    assert not np.allclose(before["head"][0], after["head"][0])
    assert r.updated_layers == ["head"]
    head = [l for l in r.model.spec.neuralNetworkClassifier.layers if l.name == "head"][0]
    assert len(head.innerProduct.weights.floatValue) == 16 * 6  # stored as float32 floatValue
    assert check(r.model) == []  # the personal model is still a valid updatable model
    # the base is untouched
    np.testing.assert_array_equal(layer_weights(DeviceModel.load(classifier_spec(w=w)))["head"][0], before["head"][0])


def test_several_updatable_layers_and_frozen_bias():
    w, X, y = task(1)
    spec = classifier_spec(w=w, updatable=("dense1", "head"))
    for l in spec.neuralNetworkClassifier.layers:
        if l.name == "dense1":
            l.innerProduct.bias.isUpdatable = False
    base = DeviceModel.load(spec)
    r = update(base, X, y, epochs=5)
    before, after = layer_weights(base), layer_weights(r.model)
    assert not np.allclose(before["dense1"][0], after["dense1"][0])
    np.testing.assert_array_equal(before["dense1"][1], after["dense1"][1])
    np.testing.assert_array_equal(before["dense0"][0], after["dense0"][0])
    assert r.loss_after < r.loss_before


def test_gradient_matches_finite_difference():
    """One plain SGD step equals lr * the numerical gradient of the mean loss."""
    w, X, y = task(2, n=8)
    base = DeviceModel.load(classifier_spec(w=w, updatable=("dense1", "head")))
    lr = 1e-3
    r = update(base, X, y, epochs=1, mini_batch_size=8, learning_rate=lr, shuffle=False)
    W0 = inner_product_params([l for l in base.spec.neuralNetworkClassifier.layers if l.name == "dense1"][0])[0]
    W1 = inner_product_params([l for l in r.model.spec.neuralNetworkClassifier.layers if l.name == "dense1"][0])[0]
    step = (W0 - W1) / lr
    spec = classifier_spec(w=w)
    layer = [l for l in spec.neuralNetworkClassifier.layers if l.name == "dense1"][0]
    flat = list(layer.innerProduct.weights.floatValue)
    for idx in (0, 37, 100):
        h = 1e-3
        losses = []
        for sgn in (1, -1):
            layer.innerProduct.weights.floatValue[idx] = flat[idx] + sgn * h
            losses.append(evaluate_loss(spec, X, y))
        layer.innerProduct.weights.floatValue[idx] = flat[idx]
        num = (losses[0] - losses[1]) / (2 * h)
        assert abs(step.ravel()[idx] - num) < 2e-3 * max(1.0, abs(num)) + 5e-3


def test_overrides_checked_against_spec():
    w, X, y = task()
    spec = classifier_spec(w=w)
    with pytest.raises(ValueError, match="epochs"):
        update(spec, X, y, epochs=7)  # allowed set is 1, 2, 3, 5, 10, 20
    with pytest.raises(ValueError, match="learning_rate"):
        update(spec, X, y, learning_rate=5.0)
    with pytest.raises(ValueError, match="mini_batch_size"):
        update(spec, X, y, mini_batch_size=3)
    with pytest.raises(ValueError, match="momentum"):
        update(spec, X, y, momentum=2.0)
    with pytest.raises(ValueError, match="not one of the model's class labels"):
        update(spec, X, ["flying"] * len(X))
    p = resolve_params(spec, epochs=2, learning_rate=0.1, mini_batch_size=16)
    assert (p.epochs, p.learning_rate, p.mini_batch_size, p.shuffle, p.seed) == (2, 0.1, 16, True, 7)


def test_pipeline_updates_last_model_only():
    _, X, y = task(3)
    spec, _ = pipeline_spec(seed=3)
    base = DeviceModel.load(spec)
    r = update(base, X, y, epochs=5)
    assert r.loss_after < r.loss_before
    stages_before = base.spec.pipelineClassifier.pipeline.models
    stages_after = r.model.spec.pipelineClassifier.pipeline.models
    assert stages_before[0] == stages_after[0]
    assert set(updatable_weights(r.model)) == {"head"}


def test_regression_mse_end_to_end():
    spec = regressor_spec()
    assert check(spec) == []
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 5))
    y = np.tanh(X @ np.array([0.5, -0.3, 0.2, 0.1, 0.0]))
    base = DeviceModel.load(spec)
    r = update(base, X, y, epochs=50)
    assert r.loss_after < 0.5 * r.loss_before
    assert r.history[-1] < r.history[0]
    assert r.model.predict(X).shape == (80,)
    assert abs(evaluate_loss(r.model, X, y) - np.mean((r.model.predict(X) - y) ** 2)) < 1e-12
    ra = update(DeviceModel.load(regressor_spec(optimizer="adam", lr=0.01)), X, y, epochs=20)
    assert ra.params.optimizer == "adam" and ra.loss_after < ra.loss_before
