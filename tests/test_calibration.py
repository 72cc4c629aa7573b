"""The calibration layer (task.yaml `model.updatable: calibration`): the export adds an affine layer after
the head, the identity at release, and the device updates it alone. Checked on real exports with the
device runtime (forward, Core ML's rules, the update) for a classifier and a regressor."""

from __future__ import annotations

import numpy as np
import pytest

from tandem import task as tasks
from tandem.device import rules
from tandem.device.runtime import DeviceModel
from tandem.device.update import update, updatable_weights
from tandem.task.kinds import kind_of
from tandem.training import export as coreml_export
from tandem.training import model
from tandem.training.model import TrainConfig

HAR = tasks.resolve("har")
GRUNFELD = tasks.resolve("grunfeld")


def _data(n_features: int, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)) * np.logspace(-1, 1, n_features) + 2.0
    return X, rng


@pytest.fixture(scope="module")
def classifier():
    X, rng = _data(12)
    y = (X[:, 0] > 2.0).astype(int) + 2 * (X[:, 1] > 2.0)
    m = model.train(X, y, TrainConfig(epochs=15, hidden_sizes=[16]), n_classes=4).model
    return m, X, y


@pytest.fixture(scope="module")
def regressor():
    X, rng = _data(3)
    y = 5.0 + 0.8 * X[:, 0] - 0.3 * X[:, 1] + rng.normal(0, 0.05, len(X))
    m = model.train(X, y, TrainConfig(epochs=30, hidden_sizes=[8]), regression=True).model
    return m, X, y


def _device(m, labels=("a", "b", "c", "d"), layers=("calibration",)) -> DeviceModel:
    spec = coreml_export.to_updatable_mlmodel(m, list(labels), updatable_layers=list(layers))
    return DeviceModel.load(coreml_export.save_mlmodel(spec))


def test_a_classifiers_calibration_is_the_identity_and_the_only_updatable_layer(classifier):
    m, X, _ = classifier
    device = _device(m)
    assert rules.check(device.spec) == []
    d = coreml_export.describe_updatable(device.spec)
    assert d["updatable_layers"] == ["calibration"]
    assert [layer["name"] for layer in d["layers"] if layer["type"] == "innerProduct"] == ["body.0", "head", "calibration"]
    assert np.abs(device.predict_proba(X) - model.predict_proba(m, X)).max() < 1e-5


def test_updating_a_classifiers_calibration_moves_it_alone_and_lowers_the_loss(classifier):
    m, X, y = classifier
    device = _device(m)
    before = updatable_weights(device)
    flipped = np.array(["a", "b", "c", "d"])[(y + 1) % 4]  # a user whose classes are all renamed
    result = update(device, X[:40], flipped[:40], epochs=30, learning_rate=0.1)
    after = updatable_weights(result.model)
    assert list(after) == ["calibration"] and result.updated_layers == ["calibration"]
    assert not np.allclose(after["calibration"]["weights"], before["calibration"]["weights"])
    assert result.loss_after < result.loss_before
    frozen = {layer.name: list(layer.innerProduct.weights.floatValue) for layer in
              result.model.spec.neuralNetworkClassifier.layers if layer.WhichOneof("layer") == "innerProduct"}
    original = {layer.name: list(layer.innerProduct.weights.floatValue) for layer in
                device.spec.neuralNetworkClassifier.layers if layer.WhichOneof("layer") == "innerProduct"}
    assert frozen["head"] == original["head"] and frozen["body.0"] == original["body.0"]


def test_a_regressors_calibration_holds_the_targets_scale_and_learns_a_users_level(regressor):
    m, X, y = regressor
    device = _device(m, labels=())
    assert rules.check(device.spec) == []
    cal = updatable_weights(device)["calibration"]
    assert cal["weights"].ravel()[0] == pytest.approx(float(m.target_std), rel=1e-6)
    assert cal["bias"].ravel()[0] == pytest.approx(float(m.target_mean), rel=1e-6)
    expected = model.predict_values(m, X)
    assert np.abs(device.predict(X).astype(float) - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    shifted = y + 1.5  # a user one and a half units above everyone else
    result = update(device, X[:30], shifted[:30], epochs=40, learning_rate=0.01, mini_batch_size=4)
    err_before = np.abs(device.predict(X[30:]).astype(float) - shifted[30:]).mean()
    err_after = np.abs(result.model.predict(X[30:]).astype(float) - shifted[30:]).mean()
    assert err_after < 0.5 * err_before


def test_the_task_decides_and_the_regressors_rate_needs_no_rescaling():
    task = GRUNFELD.model_copy(update={"model": GRUNFELD.model.model_copy(update={"updatable": "calibration"})})
    assert task.model.updatable_layers() == ["calibration"]
    assert TrainConfig.for_task(task).updatable_layers == ["calibration"]
    assert kind_of(task).device_rate(0.01, 7.0, ["calibration"]) == 0.01
    assert kind_of(task).device_rate(0.01, 7.0, ["body.0", "head"]) < 0.01
    with pytest.raises(ValueError, match="calibration"):
        TrainConfig.for_task(HAR, updatable_layers=["calibration"])
