"""Golden vectors, the Swift XCTest generator and the ``tandem device`` CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from device_builders import FEATURE_NAMES, LABELS, classifier_spec, random_weights
from typer.testing import CliRunner

from tandem import task as tasks
from tandem.cli.device import app
from tandem.contract import features
from tandem.device.golden import golden_vectors, swift_xctest
from tandem.device.runtime import DeviceModel
from tandem.device.update import update

featurize_window = features.of(tasks.resolve("har")).featurize_window  # the golden path takes it as a parameter


def windows(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 128, 6)) * 0.5 + np.array([0, 0, 1, 0, 0, 0])


@pytest.fixture(scope="module")
def model_and_data():
    raw = windows(40)
    X = np.stack([featurize_window(w) for w in raw])
    w = random_weights(0)
    w["mean"], w["std"] = X.mean(0), X.std(0) + 1e-3
    y = np.asarray(LABELS)[np.random.default_rng(1).integers(0, 6, len(X))]
    return DeviceModel.load(classifier_spec(w=w).SerializeToString()), raw, X, y


def test_golden_vectors(model_and_data):
    model, raw, X, y = model_and_data
    g = golden_vectors(model, raw[:5], featurize_window, labels=y[:5], update_inputs=X[5:40], update_labels=y[5:40])
    g = json.loads(json.dumps(g))  # JSON-clean
    assert len(g["windows"]) == 5
    w0 = g["windows"][0]
    assert np.asarray(w0["raw"]).shape == (128, 6) and len(w0["features"]) == len(FEATURE_NAMES)
    np.testing.assert_allclose(w0["probability_vector"], model.predict_proba(X[:1])[0])
    assert w0["label"] == model.predict(X[:1])[0] and w0["true_label"] == y[0]
    up = g["update"]
    assert up["params"]["epochs"] == 1 and up["params"]["shuffle"] is False
    assert up["params"]["mini_batch_size"] == 32 == len(up["inputs"]) == len(up["labels"])  # largest allowed <= 35
    # the trace reproduces: the same update on the same inputs gives the recorded weights
    again = update(model, up["inputs"], up["labels"], epochs=1, mini_batch_size=32, shuffle=False)
    head = up["updated_layers"][0]
    assert head["name"] == "head" and head["shape"] == [6, 16]
    from tandem.device.update import updatable_weights
    np.testing.assert_allclose(updatable_weights(again.model)["head"]["weights"].ravel(), head["weights"])
    np.testing.assert_allclose(again.model.predict_proba(np.asarray(up["inputs"])), up["probabilities_after"])


def test_swift_xctest_is_balanced():
    src = swift_xctest("TandemGolden.json", 1e-4, model_resource="TandemHAR", app_module="TandemApp")
    for token in ("__GOLDEN__", "__MODEL__", "__APP_MODULE__", "__TOLERANCE__", "__FORMAT__"):
        assert token not in src
    assert src.count("{") == src.count("}") and src.count("(") == src.count(")") and src.count("[") == src.count("]")
    assert 'resource("TandemGolden", "json")' in src and 'optionalResource("TandemHAR", "mlmodelc")' in src
    assert "import TandemKit" in src and "test target of TandemApp" in src and "TandemFeaturizer.features(window:" in src
    assert "CoreMLUpdateEngine(" in src and "GoldenTraceEngine(" in src and "tolerance: Double = 0.0001" in src
    assert src.count("#if canImport(CoreML)") == src.count("#endif")
    with pytest.raises(ValueError):
        swift_xctest('x"); evil(', 1e-4)


def test_the_regressor_xctest_checks_values_and_trains_on_the_mse_target():
    src = swift_xctest("golden_vectors", 1e-4, model_resource="TandemModel", kind="regressor")
    assert src.count("{") == src.count("}") and src.count("(") == src.count(")") and src.count("[") == src.count("]")
    assert "let outputName: String" in src and "let predictionsAfter: [Double]" in src
    assert "targets: .values(step.labels)" in src and "probabilit" not in src.split("import CoreML")[1]
    assert src != swift_xctest("golden_vectors", 1e-4, model_resource="TandemModel")
    with pytest.raises(ValueError, match="kind"):
        swift_xctest("golden_vectors", 1e-4, kind="ranker")


def write_batch(path, X, y):
    now = datetime.now(timezone.utc)
    cols = {"pseudonym": ["a" * 64] * len(X), "captured_at": pa.array([now] * len(X), pa.timestamp("ms", tz="UTC"))}
    cols.update({name: X[:, i] for i, name in enumerate(FEATURE_NAMES)})
    if y is not None:
        cols["label"] = list(y)
    pq.write_table(pa.table(cols), path)


def test_cli(tmp_path, model_and_data):
    model, _, X, y = model_and_data
    mpath = model.save(tmp_path / "base.mlmodel")
    write_batch(tmp_path / "d.parquet", X, y)
    runner = CliRunner()

    r = runner.invoke(app, ["predict", str(mpath), str(tmp_path / "d.parquet"), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert "accuracy:" in r.output
    assert (tmp_path / "p.csv").read_text().count("\n") == len(X) + 1

    r = runner.invoke(app, ["personalize", str(mpath), str(tmp_path / "d.parquet"), "--out",
                            str(tmp_path / "me.mlmodel"), "--epochs", "10", "--learning-rate", "0.1"])
    assert r.exit_code == 0, r.output
    assert "epoch  10" in r.output and "accuracy before" in r.output
    assert DeviceModel.load(tmp_path / "me.mlmodel").class_labels == LABELS

    r = runner.invoke(app, ["personalize", str(mpath), str(tmp_path / "d.parquet"), "--out",
                            str(tmp_path / "x.mlmodel"), "--epochs", "7"])
    assert r.exit_code == 2 and "epochs" in r.output

    r = runner.invoke(app, ["check", str(mpath)])
    assert r.exit_code == 0 and "FAIL" not in r.output
    spec = classifier_spec()
    spec.neuralNetworkClassifier.updateParams.ClearField("epochs")
    (tmp_path / "bad.mlmodel").write_bytes(spec.SerializeToString())
    r = runner.invoke(app, ["check", str(tmp_path / "bad.mlmodel")])
    assert r.exit_code == 1 and "broken rule epochs" in r.output
