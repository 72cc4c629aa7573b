"""A team's own task, as the README tells a new user to make one: `tandem init` a folder, point
TANDEM_TASK at it, `tandem share`, `tandem run`: a published, verified release, for a sensor task
whose devices also get the k-NN personal model (`device.knn_neighbors: 3`) and a tabular regressor whose device
updates a calibration layer (`model.updatable: calibration`); then, for the classifier, `tandem evaluate --folds 2 --seeds 2` and `tandem audit` (the
regressor's evaluation is in test_new_tasks.py). Every command is its own process against real Prefect, MLflow, GX
and a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TANDEM = [sys.executable, "-m", "tandem.cli"]
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # small networks: torch's thread pool only contends


def tandem(env: dict, *args: str) -> str:
    done = subprocess.run([*TANDEM, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"tandem {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("template, kind", [("sensor-classification", "neuralNetworkClassifier"),
                                            ("tabular-regression", "neuralNetworkRegressor")])
def test_init_share_run_pull_publishes_a_release(tmp_path, template, kind):
    from tandem.device.proto import Model_pb2
    from tandem.release.signing import generate

    private, public = generate()
    folder = tmp_path / "my-task"
    env = {**os.environ, "TANDEM_TASK": str(folder), "TANDEM_HOME": str(tmp_path / "home"),
           "TANDEM_PSEUDONYM_KEY": "test-key-byo", "TANDEM_SIGNING_KEY": private,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **THREADS}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "TANDEM_MODEL_NAME"):
        env.pop(var, None)
    tandem(env, "init", str(folder), "--template", template)  # TANDEM_TASK names it before it exists
    if kind == "neuralNetworkRegressor":  # the regressor's device updates a calibration layer: its scale and level
        yaml = folder / "task.yaml"
        text = yaml.read_text()
        assert "  updatable: head " in text
        yaml.write_text(text.replace("  updatable: head ", "  updatable: calibration "))
    else:  # the classifier's devices also get the k-NN personal model, and pick per user
        yaml = folder / "task.yaml"
        text = yaml.read_text()
        assert "  # knn_neighbors: 3 " in text
        yaml.write_text(text.replace("  # knn_neighbors: 3 ", "  knn_neighbors: 3   "))
    tandem(env, "share")
    assert "published tandem-my-task version 1" in tandem(env, "run")
    tandem(env, "pull", "--channel", "staging", "--out", str(tmp_path / "app"), "--public-key", public)
    manifest = json.loads((tmp_path / "app" / "manifest.json").read_text())
    assert manifest["task"]["name"] == "my-task" and manifest["task"]["tag"].startswith("my-task/v1+")
    spec = Model_pb2.Model()
    spec.ParseFromString((tmp_path / "app" / "model.mlmodel").read_bytes())
    assert spec.WhichOneof("Type") == kind and spec.isUpdatable
    layers = getattr(spec, spec.WhichOneof("Type")).layers
    updatable = [layer.name for layer in layers if layer.isUpdatable]
    assert updatable == (["calibration"] if kind == "neuralNetworkRegressor" else ["head"])
    assert manifest["gates"]["update"]["passed"] and manifest["gates"]["parity"]["passed"]
    assert (folder / "expectations" / "shared_batch.json").is_file()  # its GX suites, generated from it
    knn_file = tmp_path / "app" / "personal_knn.mlmodel"
    assert knn_file.is_file() == (kind == "neuralNetworkClassifier") and manifest["gates"]["rules"]["passed"]
    if knn_file.is_file():  # derived from the network the release ships, with the policy that picks it
        from tandem.device.knn import knn_pipeline

        assert knn_pipeline(tmp_path / "app" / "model.mlmodel", 3).to_bytes() == knn_file.read_bytes()
        listed = manifest["personal_models"]["personal_knn.mlmodel"]
        assert (listed["neighbors"], listed["stored_rows"], listed["embedding_width"]) == (3, 0, 64)
        assert listed["base_sha256"] == manifest["files"]["model.mlmodel"]["sha256"]
        golden = json.loads((tmp_path / "app" / "golden_vectors.json").read_text())["update_policy"]
        assert golden["policy"]["knn_neighbors"] == 3 and golden["method"] in ("base", "fine_tune", "knn")
        assert json.loads((tmp_path / "app" / "feature_spec.json").read_text())["update_policy"]["knn_neighbors"] == 3

    if kind == "neuralNetworkRegressor":  # its evaluation and the chain's rest: test_new_tasks.py (reaction, in ms)
        done = subprocess.run([*TANDEM, "audit", "--quick", "--no-mlflow"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode != 0 and "compares classifiers" in " ".join((done.stdout + done.stderr).split())
        return

    # then the evaluation a team reads before trusting it, on the same folder: folds x seeds, and the
    # privacy audit (its attacks work on classes)
    tandem(env, "evaluate", "--folds", "2", "--seeds", "2", "--no-flow", "--no-mlflow")
    claims = json.loads((tmp_path / "home" / "reports" / "evaluation.json").read_text())["claims"]
    assert (claims["folds"], claims["seeds"]) == (2, 2)
    print(f"{template}: generic_mean {claims['generic_mean']:.4f}")
    assert 1 / 3 < claims["generic_mean"] <= 1  # three classes: better than chance
    md = (tmp_path / "home" / "reports" / "evaluation.md").read_text()
    assert "sets no numeric targets" in md  # graded by its own targets (none), not HAR's
    tandem(env, "audit", "--quick", "--no-mlflow")
    audit = json.loads((tmp_path / "home" / "reports" / "audit.json").read_text())
    assert {"pseudonymized", "anonymized"} <= {r["form"] for r in audit["forms"]}
