"""TandemModel (Swift) against the Python device runtime: `tandem-device predict` on release-shaped
models (a classifier and a regressor built by the release exporter, a pipeline with a Scaler stage,
a tanh network) within 1e-6; `tandem-device update-policy` replays golden traces to the golden
epochs, best epoch and acceptance check (an update kept or rejected; a trace from a release before the
check), and catches a trace the policy disagrees with, and skips a row the base overflows on (1e308) as
Python's policy does; NaN, infinities and text are refused with a count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tandem import task as tasks
from tandem.contract import features
from tests.swift_build import run_device

sys.path.insert(0, str(Path(__file__).parent / "device"))
import device_builders  # noqa: E402
import release_shaped  # noqa: E402

from tandem.device.runtime import DeviceModel  # noqa: E402
from tandem.device.update_policy import UpdatePolicy, personalize  # noqa: E402

TOLERANCE = 1e-6
FEATURE_NAMES = features.of(tasks.resolve("har")).feature_names  # release-shaped: HAR's feature vector
HAR_LABELS = ["walking", "upstairs", "downstairs", "sitting", "standing", "lying"]


@pytest.fixture(scope="module")
def models():
    """name -> (DeviceModel, feature rows). The classifier has a release's shape and size (the task's
    feature vector, 128 hidden units, six classes)."""
    d = len(FEATURE_NAMES)
    clf = release_shaped.model(seed=3, d=d, hidden=(128,), labels=HAR_LABELS)
    reg = release_shaped.model(seed=4, d=2, hidden=(32,), labels=("value",), regression=True)
    pipe_spec, _ = device_builders.pipeline_spec(seed=5)
    pipe = DeviceModel.load(pipe_spec.SerializeToString())
    tanh = DeviceModel.load(device_builders.regressor_spec(seed=6).SerializeToString())
    rng = np.random.default_rng(7)
    return {"classifier": (clf, release_shaped.rows(clf, 200)), "regressor": (reg, release_shaped.rows(reg, 200)),
            "pipeline": (pipe, rng.normal(0, 3, (100, pipe.input_dim))),
            "tanh-regressor": (tanh, rng.normal(0, 2, (100, 5)))}


def predict(binary, tmp_path, model: DeviceModel, rows, *extra, check=True):
    model.save(tmp_path / "model.mlmodel")
    (tmp_path / "features.json").write_text(json.dumps(rows if isinstance(rows, list) else rows.tolist()))
    done = run_device(binary, "predict", "--model", str(tmp_path / "model.mlmodel"),
                      "--features", str(tmp_path / "features.json"), *extra, check=check)
    return done, (json.loads(done.stdout) if done.returncode == 0 else None)


@pytest.mark.parametrize("name", ["classifier", "regressor", "pipeline", "tanh-regressor"])
def test_swift_predictions_equal_the_python_runtime(name, models, tandem_device, tmp_path):
    model, X = models[name]
    _, out = predict(tandem_device, tmp_path, model, X)
    if model.is_classifier:
        python = model.predict_proba(X)
        swift = np.array(out["probabilities"])
        assert out["kind"] == "classifier" and out["class_labels"] == [str(c) for c in model.class_labels]
        assert out["labels"] == [str(v) for v in model.predict(X)]
    else:
        python = model.outputs(X)[model.spec.description.output[0].name].reshape(len(X), -1)
        swift = np.array(out["values"])
    assert swift.shape == python.shape
    worst = float(np.abs(swift - python).max())
    print(f"{name}: max |swift - python| = {worst:.3g} over {python.size} outputs")
    assert worst <= TOLERANCE
    assert len({round(v, 3) for v in python.ravel()}) > 10  # the outputs vary: a constant would not test much


def test_non_finite_and_non_numeric_rows_are_refused_with_a_count(models, tandem_device, tmp_path):
    model, X = models["classifier"]
    rows = X[:10].tolist()
    rows[2][0], rows[5][7], rows[8][1] = float("nan"), float("inf"), "0.5"  # Python's json writes NaN/Infinity
    done, _ = predict(tandem_device, tmp_path, model, rows, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "1 of 10 feature vectors hold values that are not numbers (rows 8)" in done.stderr
    rows[8][1] = -float("inf")
    done, _ = predict(tandem_device, tmp_path, model, rows, check=False)
    assert done.returncode == 1 and "3 of 10 feature vectors hold NaN or infinite values (rows 2, 5, 8)" in done.stderr
    done, out = predict(tandem_device, tmp_path, model, rows, "--skip-invalid")
    assert out["skipped_rows"] == [2, 5, 8] and "skipped 3 of 10 feature vectors" in done.stderr
    assert [p is None for p in out["probabilities"]] == [i in (2, 5, 8) for i in range(10)]
    kept = [i for i in range(10) if i not in (2, 5, 8)]
    assert np.abs(np.array([out["probabilities"][i] for i in kept]) - model.predict_proba(X[kept])).max() <= TOLERANCE
    huge = X[:3].copy()
    huge[1] = 1e308  # finite, but the network overflows on it
    done, _ = predict(tandem_device, tmp_path, model, huge, check=False)
    assert done.returncode == 1 and "1 of 3 feature vectors drive the model to non-finite outputs" in done.stderr


def policy_file(tmp_path, model, X, y, name="golden_vectors.json", trace=None):
    trace = trace or release_shaped.policy_trace(model, X, y)
    path = tmp_path / name
    path.write_text(json.dumps({"format": "tandem-golden/v1", "update_policy": trace}))
    return trace, path


POLICY_CASES = {  # name -> (model, labelled rows): the acceptance check keeps the base, or passes
    "classifier-rejected": (lambda: release_shaped.model(seed=0), {}),
    "classifier-accepted": (lambda: release_shaped.model(seed=0), {"per_class": 10, "seed": 4}),
    "regressor": (lambda: release_shaped.model(seed=1, regression=True, labels=("value",)), {}),
}


@pytest.mark.parametrize("kind", list(POLICY_CASES))
def test_swift_policy_replays_the_golden_trace_to_the_golden_epochs(kind, tandem_device, tmp_path):
    make, rows = POLICY_CASES[kind]
    model = make()
    X, y = release_shaped.labelled(model, **rows)
    trace, path = policy_file(tmp_path, model, X, y)
    model.save(tmp_path / "model.mlmodel")
    done = run_device(tandem_device, "update-policy", "--golden", str(path), "--model", str(tmp_path / "model.mlmodel"))
    out = json.loads(done.stdout)
    assert out["matches"] is True and all(out["checks"].values()), out["checks"]
    assert {"best_epoch", "acceptance", "holdout_errors"} <= set(out["checks"])
    assert out["epochs"] == trace["epochs"] and out["holdout"] == trace["holdout"] and out["order"] == trace["order"]
    assert out["task_a_epochs"] == len(trace["holdout_losses"]) - 1
    assert abs(out["base_loss"] - trace["holdout_losses"][0]) <= 1e-9
    assert out["best_epoch"] == out["golden_best_epoch"] == trace["best_epoch"] > 0
    assert out["acceptance"] == out["golden_acceptance"] == trace["acceptance"]
    assert out["accept_margin"] == trace["policy"]["accept_margin"] == 0.1
    assert np.abs(np.array(out["holdout_errors"]) - np.array(trace["holdout_errors"])).max() <= 1e-9
    if kind == "classifier-rejected":  # epoch E is no better on the held-out rows: the base is kept
        assert out["epochs"] == 0 and out["kept_base"] is True and trace["acceptance"]["accepted"] is False
        assert out["note"] == (f"epoch {trace['best_epoch']} did better than the base on {trace['acceptance']['net']} "
                               f"more held-out rows than worse, {trace['acceptance']['needed']} needed: the base is kept")
    else:  # accepted: task B refits E epochs
        assert out["epochs"] == trace["best_epoch"] and trace["acceptance"]["accepted"] is True
    if kind.startswith("classifier"):
        assert out["decisions"][-1]["cancel"] is True  # stopped `patience` after the best


def test_swift_policy_replays_a_trace_from_before_the_acceptance_check(tandem_device, tmp_path):
    """An older release: its policy has no accept_margin (Swift decodes nil: no check) and its trace no
    held-out errors, best epoch or acceptance; the policy refits whenever E > 0, as it did then."""
    model = release_shaped.model(seed=0)
    X, y = release_shaped.labelled(model)
    trace = release_shaped.policy_trace(model, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5,
                                                                  accept_margin=None))
    del trace["policy"]["accept_margin"]
    for key in ("holdout_errors", "best_epoch", "acceptance"):
        del trace[key]
    _, path = policy_file(tmp_path, model, X, y, trace=trace)
    model.save(tmp_path / "model.mlmodel")
    done = run_device(tandem_device, "update-policy", "--golden", str(path), "--model", str(tmp_path / "model.mlmodel"))
    out = json.loads(done.stdout)
    assert out["matches"] is True and "acceptance" not in out["checks"], out["checks"]
    assert out["epochs"] == trace["epochs"] == out["best_epoch"] > 0 and out["accept_margin"] is None
    assert out["acceptance"]["accepted"] is True and out["golden_acceptance"] is None and out["golden_best_epoch"] is None


def test_swift_and_python_refuse_a_policy_made_for_a_newer_kit(tandem_device, tmp_path):
    """A release whose policy has a key this kit does not know: both languages refuse it by name, rather
    than run the rest of it as an older rule."""
    model = release_shaped.model(seed=0)
    X, y = release_shaped.labelled(model)
    trace = release_shaped.policy_trace(model, X, y)
    trace["policy"]["holdout_strategy"] = "leave_one_session_out"
    path = tmp_path / "newer.json"
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), check=False)
    refusal = "the update policy has holdout_strategy, which this {} does not know: the release needs a newer {}"
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "tandem-device update-policy: " + refusal.format("TandemKit", "TandemKit")
    with pytest.raises(ValueError) as python:
        UpdatePolicy.from_dict(trace["policy"])
    assert str(python.value) == refusal.format("runtime", "Tandem")


def test_swift_policy_catches_a_trace_it_disagrees_with(tandem_device, tmp_path):
    model = release_shaped.model(seed=0)
    X, y = release_shaped.labelled(model)
    trace = release_shaped.policy_trace(model, X, y)
    trace["epochs"] += 1  # the recorded choice no longer follows from the recorded losses
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), check=False)
    assert done.returncode == 1 and json.loads(done.stdout)["checks"]["epochs"] is False
    assert done.stderr.strip() == "the update policy disagrees with the golden trace on: epochs"


def test_swift_policy_catches_a_trace_whose_acceptance_check_disagrees(tandem_device, tmp_path):
    model = release_shaped.model(seed=0)
    X, y = release_shaped.labelled(model)
    trace = release_shaped.policy_trace(model, X, y)
    assert trace["acceptance"]["accepted"] is False and trace["best_epoch"] > 0
    # The recorded verdict no longer follows from the recorded rows: Swift's check still rejects.
    trace["acceptance"] = {**trace["acceptance"], "net": 1, "better": 1, "accepted": True}
    trace["epochs"] = trace["best_epoch"]
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), check=False)
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip() == "the update policy disagrees with the golden trace on: epochs, acceptance"
    # Epoch E's recorded row errors say it got every held-out row right: Swift accepts, the trace did not.
    trace = release_shaped.policy_trace(model, X, y)
    trace["holdout_errors"][trace["best_epoch"]] = [0.0] * len(trace["holdout"])
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), check=False)
    out = json.loads(done.stdout)
    assert done.returncode == 1 and out["acceptance"]["accepted"] is True and out["epochs"] == trace["best_epoch"]
    # (the run of task A recorded in `turns` kept its own verdict: that disagrees too)
    assert done.stderr.strip() == "the update policy disagrees with the golden trace on: epochs, acceptance, turns"


def adam_classifier() -> DeviceModel:
    return DeviceModel.load(device_builders.classifier_spec(w=device_builders.random_weights(8, d=6, hidden=(10,), k=3),
                                                            updatable=("dense0", "head"), optimizer="adam",
                                                            epochs_set=tuple(range(1, 41))).SerializeToString())


@pytest.mark.parametrize("kind", ["classifier", "regressor", "adam-classifier", "release-sized"])
def test_swift_update_computes_what_the_golden_trace_records(kind, tandem_device, tmp_path):
    """TandemKit's own update (no replay): the held-out loss after every epoch, the chosen epochs and
    the personal model's outputs equal the Python runtime's."""
    model = {"classifier": lambda: release_shaped.model(seed=0),
             "regressor": lambda: release_shaped.model(seed=1, regression=True, labels=("value",)),
             "adam-classifier": adam_classifier,
             "release-sized": lambda: release_shaped.model(seed=2, d=len(FEATURE_NAMES), hidden=(128,), labels=HAR_LABELS)}[kind]()
    X, y = release_shaped.labelled(model)
    trace, path = policy_file(tmp_path, model, X, y)
    model.save(tmp_path / "model.mlmodel")
    done = run_device(tandem_device, "update-policy", "--golden", str(path), "--model", str(tmp_path / "model.mlmodel"),
                      "--engine", "interpreter")
    out = json.loads(done.stdout)
    assert out["matches"] is True and all(out["checks"].values()), out["checks"]
    assert out["epochs"] == trace["epochs"]
    print(f"{kind}: epochs {out['epochs']}, max loss difference {out['max_holdout_loss_difference']:.3g}, "
          f"max personal output difference {out['max_personal_output_difference']:.3g}")
    assert out["max_holdout_loss_difference"] <= 1e-9 and out["max_personal_output_difference"] <= TOLERANCE


def test_swift_policy_replays_a_k_fold_trace_turn_by_turn(tandem_device, tmp_path):
    """holdout_folds 3: task A runs once per fold in both languages; a trace missing a run is refused."""
    model = release_shaped.model(seed=0)
    X, y = release_shaped.labelled(model, per_class=10, seed=4)
    folds = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, accept_margin=0.05, holdout_folds=3)
    trace = release_shaped.policy_trace(model, X, y, folds)
    path = tmp_path / "folds.json"
    path.write_text(json.dumps({"update_policy": trace}))
    model.save(tmp_path / "model.mlmodel")
    for engine in (["--engine", "replay"], ["--engine", "interpreter", "--model", str(tmp_path / "model.mlmodel")]):
        out = json.loads(run_device(tandem_device, "update-policy", "--golden", str(path), *engine).stdout)
        assert out["matches"] and out["checks"]["turns"] and out["epochs"] == trace["epochs"]
        assert [t["best_epoch"] for t in out["turns"]] == [t["best_epoch"] for t in trace["turns"]]
        assert [t["holdout"] for t in out["turns"]] == [t["holdout"] for t in trace["turns"]] and len(out["turns"]) == 3
    trace["turns"] = trace["turns"][:2]
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), check=False)
    assert done.returncode != 0 and "records 2 run(s) of task A, but the policy started another" in done.stderr


@pytest.mark.parametrize("seed, method", [(2, "knn"), (3, "fine_tune")])
def test_swift_policy_computes_the_knn_candidate_as_python_does(seed, method, tandem_device, tmp_path):
    """The k-NN candidate (knn_neighbors 3): Swift's interpreter fits the release's personal_knn.mlmodel per turn
    and chooses as Python's policy did, for a user the k-NN model wins and one the fine-tune wins; a trace
    claiming the other method is caught, and the interpreter refuses to run without the k-NN model."""
    from tandem.device.knn import knn_pipeline

    model = release_shaped.model(seed=0)
    X, y = release_shaped.nearest_centre_user(model, seed)
    trace = release_shaped.policy_trace(model, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5,
                                                                   knn_neighbors=3))
    assert trace["method"] == method
    path = tmp_path / "knn.json"
    path.write_text(json.dumps({"update_policy": trace}))
    model.save(tmp_path / "model.mlmodel")
    knn_pipeline(model, 3).save(tmp_path / "personal_knn.mlmodel")
    engine = ["--engine", "interpreter", "--model", str(tmp_path / "model.mlmodel")]
    out = json.loads(run_device(tandem_device, "update-policy", "--golden", str(path), *engine,
                                "--knn-model", str(tmp_path / "personal_knn.mlmodel")).stdout)
    assert out["matches"] and out["checks"]["method"] and out["checks"]["knn_turns"], out["checks"]
    assert out["method"] == method and out["knn"]["net"] == trace["knn"]["net"]
    done = run_device(tandem_device, "update-policy", "--golden", str(path), *engine, check=False)
    assert done.returncode != 0 and "needs --knn-model" in done.stderr
    trace["method"] = "fine_tune" if method == "knn" else "knn"
    path.write_text(json.dumps({"update_policy": trace}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), *engine,
                      "--knn-model", str(tmp_path / "personal_knn.mlmodel"), check=False)
    assert done.returncode != 0 and json.loads(done.stdout)["checks"]["method"] is False


@pytest.mark.parametrize("method", ["fine_tune", "knn"])
def test_swift_policy_skips_rows_the_base_overflows_on_as_python_does(method, tandem_device, tmp_path):
    """A labelled row of 1e308 (finite, but the base overflows on it): Python's policy and Swift's (both engines,
    with the k-NN candidate too) skip it before any update and decide the rest alike."""
    from tandem.device.knn import knn_pipeline

    model = release_shaped.model(seed=0)
    if method == "knn":  # the k-NN test's user for whom the k-NN model wins
        X, y = release_shaped.nearest_centre_user(model, 2)
        policy = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, knn_neighbors=3)
    else:
        X, y = release_shaped.labelled(model, per_class=10, seed=4)
        policy = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5)
    bad = 5
    X, y = np.insert(X, bad, 1e308, axis=0), np.insert(y, bad, y[bad])
    python = personalize(model, X, y, policy)
    assert python.skipped == [bad] and python.method == method
    trace = release_shaped.policy_trace(model, X, y, policy)  # the trace records the skipped row
    assert trace["skipped"] == [bad] and trace["epochs"] == python.epochs and trace["holdout"] == python.holdout
    assert len(trace["inputs"]) == len(X) and len(trace["order"]) == len(trace["probabilities_after"]) == len(X) - 1
    path = tmp_path / "overflow.json"
    path.write_text(json.dumps({"update_policy": trace}))
    model.save(tmp_path / "model.mlmodel")
    knn_pipeline(model, 3).save(tmp_path / "personal_knn.mlmodel")
    knn = ["--knn-model", str(tmp_path / "personal_knn.mlmodel")] if policy.knn_neighbors else []
    with_model = ["--model", str(tmp_path / "model.mlmodel"), *knn]
    # replay without the model: which rows the base overflows on is read from the trace, not computed
    for engine, args in (("replay", with_model), ("replay", []), ("interpreter", with_model)):
        out = json.loads(run_device(tandem_device, "update-policy", "--golden", str(path), "--engine", engine,
                                    *args).stdout)
        assert out["matches"] is True and out["checks"]["skipped"] is True, (engine, out["checks"])
        assert out["skipped_rows"] == python.skipped and out["note"] == python.note, engine
        assert (out["epochs"], out["best_epoch"], out["method"]) == (python.epochs, python.best_epoch, python.method)
        assert out["holdout"] == python.holdout and out["acceptance"] == (python.acceptance or None)
        assert out["knn"] == (python.knn or None)
    # a trace that says no row was skipped disagrees with a runtime that skips one
    path.write_text(json.dumps({"update_policy": {**trace, "skipped": []}}))
    done = run_device(tandem_device, "update-policy", "--golden", str(path), "--engine", "interpreter", *with_model,
                      check=False)
    assert done.returncode == 1 and json.loads(done.stdout)["checks"]["skipped"] is False
