"""The updatable Core ML export: structure, update settings, and numeric parity with torch.

coremltools cannot run a model on Linux, so parity is checked with a small numpy interpreter of the
spec's layers below (reading the weights back out of the protobuf)."""

from __future__ import annotations

import numpy as np
import pytest

from tandem import task as tasks
from tandem.contract import features
from tandem.training import export as coreml_export
from tandem.training import model
from tandem.training.device_update import DeviceUpdateConfig
from tandem.training.model import TrainConfig

HAR = tasks.resolve("har")
FZ = features.of(HAR)
LABELS = list(FZ.classes)


def numpy_forward(spec, X: np.ndarray) -> np.ndarray:
    """Class probabilities (n, classes) of a NeuralNetworkClassifier spec, float64, read from its layers."""
    nn_spec = spec.neuralNetworkClassifier
    blobs = {spec.description.input[0].name: np.asarray(X, dtype=np.float64)}
    for layer in nn_spec.layers:
        kind = layer.WhichOneof("layer")
        x = blobs[layer.input[0]]
        if kind == "batchnorm":
            p = layer.batchnorm
            gamma, beta, mean, var = (np.asarray(v.floatValue, np.float64) for v in (p.gamma, p.beta, p.mean, p.variance))
            assert not p.computeMeanVar and len(gamma) == p.channels
            out = gamma * (x - mean) / np.sqrt(var + p.epsilon) + beta
        elif kind == "innerProduct":
            p = layer.innerProduct
            W = np.asarray(p.weights.floatValue, np.float64).reshape(p.outputChannels, p.inputChannels)
            out = x @ W.T + (np.asarray(p.bias.floatValue, np.float64) if p.hasBias else 0.0)
        elif kind == "activation":
            assert layer.activation.WhichOneof("NonlinearityType") == "ReLU"
            out = np.maximum(x, 0.0)
        elif kind == "softmax":
            z = np.exp(x - x.max(axis=1, keepdims=True))
            out = z / z.sum(axis=1, keepdims=True)
        else:
            raise AssertionError(f"unexpected layer type {kind}")
        blobs[layer.output[0]] = out
    return blobs[nn_spec.labelProbabilityLayerName]


def synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    centers = rng.normal(scale=2.0, size=(6, FZ.n_features))
    X = (centers[y] + rng.normal(size=(n, FZ.n_features))) * np.logspace(-2, 2, FZ.n_features) + 3.0
    return X, y


@pytest.fixture(scope="module")
def trained():
    X, y = synthetic()
    return model.train(X, y, TrainConfig(epochs=10, hidden_sizes=[32, 16]), n_classes=6).model


def test_spec_structure_and_update_settings(trained):
    import coremltools as ct

    spec = coreml_export.to_updatable_mlmodel(
        trained, LABELS, updatable_layers=["head"],
        update=DeviceUpdateConfig(optimizer="sgd", learning_rate=0.02, mini_batch_size=12, epochs=7, momentum=0.9),
        metadata={"model_version": "2026.01.05-1", "mlflow_run_id": "abc"}, version="2026.01.05-1")
    assert spec.specificationVersion >= 4 and spec.isUpdatable
    mlmodel = ct.models.MLModel(spec)  # coremltools' own loading and checks
    assert mlmodel.get_spec().isUpdatable

    nn_spec = spec.neuralNetworkClassifier
    assert [layer.WhichOneof("layer") for layer in nn_spec.layers] == [
        "batchnorm", "innerProduct", "activation", "innerProduct", "activation", "innerProduct", "softmax"]
    assert [layer.name for layer in nn_spec.layers if layer.isUpdatable] == ["head"]
    assert list(nn_spec.stringClassLabels.vector) == LABELS
    for layer in nn_spec.layers:  # float32 weights, no fp16
        if layer.WhichOneof("layer") == "innerProduct":
            assert len(layer.innerProduct.weights.floatValue) and not layer.innerProduct.weights.float16Value
            assert layer.innerProduct.weights.isUpdatable == (layer.name == "head")

    desc = spec.description
    assert [(f.name, f.type.multiArrayType.shape, f.type.multiArrayType.dataType) for f in desc.input] == [
        ("features", [FZ.n_features], ct.proto.FeatureTypes_pb2.ArrayFeatureType.DOUBLE)]
    assert {f.name for f in desc.output} == {"label", "labelProbability"}
    assert [f.name for f in desc.trainingInput] == ["features", "label"]
    assert desc.metadata.author == "Tandem" and desc.metadata.shortDescription
    assert desc.metadata.userDefined["model_version"] == "2026.01.05-1"
    assert all(f.shortDescription for f in [*desc.input, *desc.output, *desc.trainingInput])

    d = coreml_export.describe_updatable(spec)
    assert d["updatable_layers"] == ["head"]
    assert d["loss"] == {"name": "lossLayer", "type": "categoricalCrossEntropyLossLayer",
                         "input": "labelProbability", "target": "labelProbability_true"}
    assert d["optimizer"]["type"] == "sgd"
    assert d["optimizer"]["learning_rate"]["default"] == pytest.approx(0.02)
    assert d["optimizer"]["learning_rate"]["min"] < 0.02 < d["optimizer"]["learning_rate"]["max"]
    assert d["optimizer"]["mini_batch_size"]["default"] == 12 and 12 in d["optimizer"]["mini_batch_size"]["allowed"]
    assert d["optimizer"]["momentum"]["default"] == pytest.approx(0.9)
    assert d["epochs"]["default"] == 7 and d["epochs"]["allowed"] == list(range(1, 101))
    assert d["shuffle"] is True
    assert d["inputs"][0]["shape"] == [FZ.n_features] and d["inputs"][0]["data_type"] == "DOUBLE"
    assert d["class_labels"] == LABELS and d["metadata"]["version"] == "2026.01.05-1"
    import json
    json.dumps(d)


def test_adam_and_several_updatable_layers(trained):
    spec = coreml_export.to_updatable_mlmodel(trained, LABELS, updatable_layers=["body.1", "head"],
                                              update=DeviceUpdateConfig(optimizer="adam", learning_rate=1e-3,
                                                                        mini_batch_size=4, epochs=3,
                                                                        epochs_allowed=[1, 3, 5]))
    d = coreml_export.describe_updatable(spec)
    assert d["updatable_layers"] == ["body.1", "head"]
    assert d["optimizer"]["type"] == "adam" and d["optimizer"]["beta2"]["default"] == pytest.approx(0.999)
    assert d["epochs"] == {"default": 3, "allowed": [1, 3, 5]}
    # the weights file round-trips
    data = coreml_export.save_mlmodel(spec)
    again = coreml_export.load_spec(data)
    assert again == spec
    assert coreml_export.describe_updatable(again) == d


def test_rejects_bad_arguments(trained):
    with pytest.raises(ValueError, match="unknown updatable layer"):
        coreml_export.to_updatable_mlmodel(trained, LABELS, updatable_layers=["body.7"])
    with pytest.raises(ValueError, match="class labels"):
        coreml_export.to_updatable_mlmodel(trained, LABELS[:5])
    with pytest.raises(ValueError, match="optimizer"):
        DeviceUpdateConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate"):
        DeviceUpdateConfig(learning_rate=0.5, learning_rate_range=(1e-6, 0.1))


def test_numpy_forward_matches_torch(trained, tmp_path):
    spec = coreml_export.to_updatable_mlmodel(trained, LABELS)
    path = tmp_path / "m.mlmodel"
    coreml_export.save_mlmodel(spec, path)
    spec = coreml_export.load_spec(path)
    X, _ = synthetic(n=300, seed=7)
    rng = np.random.default_rng(1)
    X = np.concatenate([X, rng.normal(size=(100, FZ.n_features)) * np.logspace(-2, 2, FZ.n_features)])
    expected = model.predict_proba(trained, X)
    got = numpy_forward(spec, X)
    assert np.abs(got - expected).max() < 1e-5
    # and from the exported weights dict, not the module
    spec2 = coreml_export.to_updatable_mlmodel(model.export_weights(trained), LABELS)
    assert np.abs(numpy_forward(spec2, X) - expected).max() < 1e-5


def test_numpy_forward_matches_torch_on_hapt():
    from tandem.builtin_tasks.har.loader import cut_windows, load_recordings

    recs = [r for r in load_recordings() if r.user in (1, 2, 3)]
    Xs, ys = [], []
    for rec in recs:
        windows, codes, _ = cut_windows(rec.signals, rec.labels)
        Xs.append(FZ.featurize(windows))
        ys.append(codes - 1)
    X, y = np.concatenate(Xs), np.concatenate(ys)
    m = model.train(X, y, TrainConfig(epochs=5, hidden_sizes=[64, 64]), n_classes=6).model
    spec = coreml_export.to_updatable_mlmodel(m, LABELS, updatable_layers=["body.1", "head"])
    expected = model.predict_proba(m, X)
    got = numpy_forward(spec, X)
    print(f"\nHAPT parity: max |numpy(spec) - torch| = {np.abs(got - expected).max():.2e} over {len(X)} windows")
    assert np.abs(got - expected).max() < 1e-5
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_the_update_defaults_and_descriptions_are_the_tasks_own(trained):
    """No default is another task's: the export's update settings come from the task it is given (its
    task.yaml `device` section), its descriptions name that task; a 3-class head exports with 3 labels."""
    grunfeld = tasks.resolve("grunfeld")
    assert DeviceUpdateConfig().mini_batch_size == 8 and DeviceUpdateConfig.for_task(grunfeld).mini_batch_size == 4
    assert DeviceUpdateConfig(epochs=3).on(grunfeld).model_dump() == DeviceUpdateConfig.for_task(grunfeld, epochs=3).model_dump()
    spec = coreml_export.to_updatable_mlmodel(trained, LABELS, task=HAR)
    d = coreml_export.describe_updatable(spec)
    assert d["optimizer"]["mini_batch_size"]["default"] == HAR.device.batch_size
    assert d["optimizer"]["learning_rate"]["default"] == pytest.approx(HAR.device.learning_rate)
    assert d["metadata"]["short_description"].startswith(f"{HAR.name} classifier")
    X, y = synthetic(n=90)
    three = model.train(X, y % 3, TrainConfig(epochs=2, hidden_sizes=[8]), n_classes=3).model
    d3 = coreml_export.describe_updatable(coreml_export.to_updatable_mlmodel(three, ["a", "b", "c"]))
    assert d3["class_labels"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="3 class labels for a model with 6 outputs"):
        coreml_export.to_updatable_mlmodel(trained, ["a", "b", "c"])
