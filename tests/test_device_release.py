"""Issue 3 on real HAPT windows: the device runtime matches torch, an independent reading of the
.mlmodel reproduces the golden vectors, and `tandem device` personalizes a user's model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tandem import task as tasks
from tandem.builtin_tasks.har.loader import hapt_fleet
from tandem.contract import features as featurization
from tandem.device.runtime import DeviceModel
from tandem.device.update import updatable_weights
from tandem.fleet import devices as evalset
from tandem.release.gates import golden_files
from tandem.release.params import RunParams
from tandem.training import model, pretrain
from tandem.training.personalization import local_split, pick_labelled

TRAIN_USERS, EVAL_USERS = [1, 2, 3, 4, 6, 7, 8, 9], [5, 10]
HAR = tasks.resolve("har")


@pytest.fixture(scope="module")
def hapt(tmp_path_factory):
    users = hapt_fleet(TRAIN_USERS + EVAL_USERS)
    train = [u for u in users if int(u.user_id[-2:]) in TRAIN_USERS]
    X = np.concatenate([u.features for u in train])
    y = featurization.of(HAR).label_indices(np.concatenate([u.labels for u in train]))
    params = RunParams.for_task(HAR, {"train": {"epochs": 40, "patience": 10}})
    result = model.train(X, y, params.train, groups=np.concatenate([[u.user_id] * len(u) for u in train]),
                         n_classes=len(featurization.of(HAR).classes))
    mlmodel = pretrain.convert(HAR, result, params, {"test": "hapt"})
    home = tmp_path_factory.mktemp("home")
    evalset.write_evaluation_devices(home, [u for u in users if u not in train], b"test-key")
    return result, mlmodel, evalset.load_evaluation(home, tasks.resolve("har")), home


def test_runtime_matches_torch_on_real_windows(hapt):
    result, mlmodel, users, _ = hapt
    X = np.concatenate([u.features for u in users])
    ours, torch_probs = DeviceModel.load(mlmodel).predict_proba(X), model.predict_proba(result.model, X)
    assert np.abs(ours - torch_probs).max() <= 1e-5
    assert (ours.argmax(1) == torch_probs.argmax(1)).all()


def _featurize_from_spec(window: np.ndarray, spec: dict) -> np.ndarray:
    """The feature spec, implemented again from its text (as the Swift side would)."""
    from tests.test_feature_spec_only import featurize  # the spec-only implementation

    return np.array(featurize(spec, window.tolist()))


def _forward_from_protobuf(mlmodel: bytes, x: np.ndarray) -> np.ndarray:
    """A forward pass read straight from Core ML's protobuf with coremltools' own message classes."""
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString(mlmodel)
    z = x.astype(np.float64)
    for layer in spec.neuralNetworkClassifier.layers:
        kind = layer.WhichOneof("layer")
        if kind == "batchnorm":
            bn = layer.batchnorm
            gamma, beta = np.array(bn.gamma.floatValue), np.array(bn.beta.floatValue)
            mean, var = np.array(bn.mean.floatValue), np.array(bn.variance.floatValue)
            z = gamma * (z - mean) / np.sqrt(var + bn.epsilon) + beta
        elif kind == "innerProduct":
            ip = layer.innerProduct
            W = np.array(ip.weights.floatValue).reshape(ip.outputChannels, ip.inputChannels)
            z = W @ z + (np.array(ip.bias.floatValue) if ip.hasBias else 0)
        elif kind == "activation":
            assert layer.activation.WhichOneof("NonlinearityType") == "ReLU"
            z = np.maximum(z, 0)
        elif kind == "softmax":
            e = np.exp(z - z.max())
            z = e / e.sum()
        else:
            raise AssertionError(f"unexpected layer {kind}")
    return z


def test_independent_reading_reproduces_the_golden_vectors(hapt):
    _, mlmodel, users, _ = hapt
    files = golden_files(HAR, DeviceModel.load(mlmodel), users[0])
    golden = json.loads(files["golden_vectors.json"])
    spec = featurization.of(HAR).feature_spec()
    assert len(golden["windows"]) == 36
    for w in golden["windows"]:
        features = _featurize_from_spec(np.array(w["raw"]), spec)
        np.testing.assert_allclose(features, w["features"], rtol=0, atol=1e-9)
        probs = _forward_from_protobuf(mlmodel, np.array(w["model_input"]))
        assert np.abs(probs - np.array(w["probability_vector"])).max() <= 1e-5
        assert golden["model"]["class_labels"][int(probs.argmax())] == w["label"]
    assert "TandemFeaturizer.features(window:" in files["TandemGoldenTests.swift"].decode()
    # the trace runs the policy the release ships in feature_spec.json: the task's, with its acceptance check
    from tandem.release.candidate import release_spec
    from tandem.training.device_update import policy_for

    shipped = release_spec(HAR)["update_policy"]
    assert golden["update_policy"]["policy"] == shipped == policy_for(HAR).as_dict()
    assert (shipped["accept_margin"], shipped["holdout_folds"]) == (HAR.device.accept_margin, HAR.device.holdout_folds) == (0.05, 3)
    trace = golden["update_policy"]
    assert len(trace["turns"]) == 3 or (trace["turns"] == [] and trace["epochs"] == 30)  # 3 runs of task A, or the fallback
    if trace["best_epoch"] > 0:  # the check ran on the best epoch: its verdict decided task B
        assert trace["acceptance"]["accepted"] == (trace["epochs"] > 0)


def test_device_personalize_raises_a_users_accuracy_and_touches_only_updatable_layers(hapt, tmp_path):
    from tandem.cli.main import app

    _, mlmodel, users, home = hapt
    base_path = tmp_path / "base.mlmodel"
    base_path.write_bytes(mlmodel)
    runner = CliRunner()
    gains = []
    for user in users:
        local = pq.read_table(evalset.devices_dir(home) / user.user_id / "local.parquet")  # the device's own data
        pool, test = local_split(user)
        train = pick_labelled(user.labels, pool, per_user=20)
        pq.write_table(local.take(train), tmp_path / f"{user.user_id}-train.parquet")
        personal = tmp_path / f"{user.user_id}.mlmodel"
        out = runner.invoke(app, ["device", "personalize", str(base_path), str(tmp_path / f"{user.user_id}-train.parquet"),
                                  "--out", str(personal)])
        assert out.exit_code == 0, out.output
        assert runner.invoke(app, ["device", "check", str(personal)]).exit_code == 0
        before = (DeviceModel.load(mlmodel).predict(user.features[test]) == user.labels[test]).mean()
        after = (DeviceModel.load(personal.read_bytes()).predict(user.features[test]) == user.labels[test]).mean()
        gains.append(after - before)

        base_spec, personal_spec = DeviceModel.load(mlmodel).spec, DeviceModel.load(personal.read_bytes()).spec
        for a, b in zip(base_spec.neuralNetworkClassifier.layers, personal_spec.neuralNetworkClassifier.layers):
            if a.isUpdatable:
                assert a.SerializeToString() != b.SerializeToString()
            else:
                assert a.SerializeToString() == b.SerializeToString(), a.name
        updatable = {layer.name for layer in base_spec.neuralNetworkClassifier.layers if layer.isUpdatable}
        assert set(updatable_weights(personal.read_bytes())) == updatable  # exactly the spec's updatable layers
    assert np.mean(gains) > 0, gains
