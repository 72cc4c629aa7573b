"""Forward parity: the numpy interpreter of the spec against the torch model it was built from."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from device_builders import LABELS, D, classifier_spec, pipeline_spec, random_weights

from tandem.device.runtime import DeviceModel, UnsupportedLayer


def torch_mlp(w):
    layers = []
    for i, (W, b) in enumerate(zip(w["ws"], w["bs"])):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(w["ws"]) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def torch_proba(w, X):
    net = torch_mlp(w)
    with torch.no_grad():
        z = (torch.from_numpy(X) - torch.from_numpy(w["mean"])) / torch.from_numpy(w["std"])
        return torch.softmax(net(z), dim=1).numpy()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    w = random_weights(3)
    X = w["mean"] + w["std"] * rng.normal(size=(200, D))
    return w, X


def test_parity_with_torch(data):
    w, X = data
    m = DeviceModel.load(classifier_spec(w=w).SerializeToString())
    p = m.predict_proba(X)
    assert p.shape == (200, 6)
    assert np.abs(p - torch_proba(w, X)).max() <= 1e-5
    assert list(m.predict(X)) == [LABELS[i] for i in torch_proba(w, X).argmax(1)]
    one = m.predict_one(X[0])
    assert one["label"] in LABELS and abs(sum(one["probabilities"].values()) - 1) < 1e-9
    assert m.class_labels == LABELS and m.input_name == "features" and m.input_dim == D


def test_pipeline_with_scaler_stage(data):
    w, X = data
    spec, w = pipeline_spec(seed=3)
    m = DeviceModel.load(spec.SerializeToString())
    assert np.abs(m.predict_proba(X) - torch_proba(w, X)).max() <= 1e-5
    assert m.class_labels == LABELS


def test_save_load_roundtrip(tmp_path, data):
    w, X = data
    raw = classifier_spec(w=w).SerializeToString()
    m = DeviceModel.load(raw)
    path = m.save(tmp_path / "m.mlmodel")
    again = DeviceModel.load(path)
    assert again.sha256 == m.sha256 and path.read_bytes() == raw
    np.testing.assert_array_equal(again.predict_proba(X), m.predict_proba(X))


def test_activations_and_unknown_layer(data):
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(3))], disable_rank5_shape_mapping=True)
    b.add_activation("s", "SIGMOID", "x", "a")
    b.add_activation("t", "TANH", "a", "c")
    b.add_activation("l", "LINEAR", "c", "d", params=[2.0, 1.0])
    b.add_activation("k", "LEAKYRELU", "d", "y", params=[0.1])
    x = np.array([[-2.0, 0.0, 3.0]])
    m = DeviceModel.load(b.spec)
    d = 2 * np.tanh(1 / (1 + np.exp(-x))) + 1
    np.testing.assert_allclose(m.outputs(x)["y"], np.where(d > 0, d, 0.1 * d))

    b2 = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(3))], disable_rank5_shape_mapping=True)
    b2.add_unary("weird", "x", "y", mode="log")
    with pytest.raises(UnsupportedLayer, match="'weird'.*'unary'"):
        DeviceModel.load(b2.spec).outputs(x)


def test_device_imports_without_torch_or_coremltools():
    code = ("import tandem.device.runtime, tandem.device.update, tandem.device.rules, tandem.device.backup, "
            "tandem.device.golden, sys; "
            "bad = [m for m in ('torch', 'coremltools', 'pandas', 'pyarrow', 'prefect', 'mlflow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def test_vendored_proto_coexists_with_coremltools():
    import coremltools.proto.Model_pb2 as theirs

    from tandem.device.proto import Model_pb2 as ours

    spec = classifier_spec()
    mine = ours.Model()
    mine.ParseFromString(spec.SerializeToString())
    back = theirs.Model()
    back.ParseFromString(mine.SerializeToString())
    assert back == spec
