"""The built-in regression task end to end, as a user runs it: `TANDEM_TASK=grunfeld` and the same
commands as the HAR demo (share, then run with the simulator's folder deleted, pull, device check,
device personalize). Each command is its own process (the task is chosen per process), against a
real Prefect engine, MLflow on SQLite, GX and a local store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from tandem.device.proto import Model_pb2

TANDEM = [sys.executable, "-m", "tandem.cli"]


def tandem(env: dict, *args: str) -> str:
    done = subprocess.run([*TANDEM, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"tandem {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from tandem.release.signing import generate

    root = tmp_path_factory.mktemp("grunfeld")
    private, public = generate()
    env = {**os.environ, "TANDEM_TASK": "grunfeld", "TANDEM_HOME": str(root / "home"),
           "TANDEM_PSEUDONYM_KEY": "test-key-regression", "TANDEM_SIGNING_KEY": private,
           "TANDEM_RELEASE_PUBLIC_KEYS": public, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "TANDEM_MODEL_NAME"):
        env.pop(var, None)
    tandem(env, "share")
    devices = root / "home" / "devices"
    never_shared = sorted(p for p in devices.iterdir() if p.is_dir())[0] / "local.parquet"
    kept = root / "never-shared.parquet"
    shutil.copy(never_shared, kept)  # what that user's phone holds; the server never sees it
    shutil.rmtree(devices)  # the run reads the store only
    run = tandem(env, "run")
    tandem(env, "pull", "--channel", "staging", "--out", str(root / "app"), "--public-key", public)
    return env, root, kept, run


def test_the_release_is_an_updatable_regressor_with_an_mse_loss(published):
    env, root, _, run = published
    assert "published tandem-grunfeld version 1" in run and "MAE" in run
    spec = Model_pb2.Model()
    spec.ParseFromString((root / "app" / "model.mlmodel").read_bytes())
    assert spec.WhichOneof("Type") == "neuralNetworkRegressor" and spec.isUpdatable
    [loss] = spec.neuralNetworkRegressor.updateParams.lossLayers
    assert loss.WhichOneof("LossLayerType") == "meanSquaredErrorLossLayer"
    assert "ok" in tandem(env, "device", "check", str(root / "app" / "model.mlmodel"))


def test_the_manifest_and_mlflow_give_generic_and_personalized_errors(published):
    env, root, _, _ = published
    manifest = json.loads((root / "app" / "manifest.json").read_text())
    assert manifest["task"]["name"] == "grunfeld" and manifest["task"]["kind"] == "regression"
    assert manifest["metrics"]["mae"] > 0 and manifest["metrics"]["rmse"] >= manifest["metrics"]["mae"]
    update = manifest["gates"]["update"]
    assert update["passed"] and update["mae_after"] < update["mae_before"]
    assert update["mini_batch_size"] == 4  # grunfeld's task.yaml `device.batch_size`, not a hard-coded 8
    # its floor: each firm's own mean of its labelled rows, which the model after the update must beat by the margin
    comparison = manifest["gates"]["comparison"]
    assert comparison["floor_set_by"] == "gates.mae_margin" and "own mean" in comparison["baseline_is"]
    assert comparison["floor_judges"] == update["mae_after"] <= comparison["floor"] < comparison["baseline"]
    spec = json.loads((root / "app" / "feature_spec.json").read_text())
    assert spec["input"]["kind"] == "tabular" and spec["target"]["name"] == "log_invest"
    # the XCTest the app build runs decodes the golden file: every field it declares is there
    swift = (root / "app" / "TandemGoldenTests.swift").read_text()
    golden = json.loads((root / "app" / "golden_vectors.json").read_text())
    declared = dict(re.findall(r"private struct (\w+): Decodable \{(.*?)\n\}", swift, re.S))
    snake = {name: [re.sub(r"(?<!^)([A-Z])", r"_\1", f).lower() for f in re.findall(r"let (\w+):", body)]
             for name, body in declared.items()}
    for struct, obj in (("Golden", golden), ("GoldenModel", golden["model"]), ("GoldenWindow", golden["windows"][0]),
                        ("GoldenUpdate", golden["update"]), ("GoldenUpdateParams", golden["update"]["params"])):
        assert set(snake[struct]) <= set(obj), (struct, set(snake[struct]) - set(obj))
    assert golden["model"]["kind"] == "regressor" and "TandemFeaturizer.features(window:" in swift
    run = MlflowClient(f"sqlite:///{root / 'home' / 'mlflow.db'}").get_run(manifest["mlflow"]["run_id"])
    for key in ("eval_mae", "eval_rmse", "gate_update_mae_before", "gate_update_mae_after"):
        assert key in run.data.metrics, sorted(run.data.metrics)


def test_personalizing_on_a_users_earlier_rows_lowers_the_error_on_the_later(published):
    env, root, kept, _ = published
    rows = pq.read_table(kept).sort_by("captured_at")
    half = rows.num_rows // 2
    pq.write_table(rows.slice(0, half), root / "earlier.parquet")
    pq.write_table(rows.slice(half), root / "later.parquet")
    base = str(root / "app" / "model.mlmodel")
    personal = str(root / "personal.mlmodel")
    tandem(env, "device", "personalize", base, str(root / "earlier.parquet"), "--out", personal)

    def mae(model: str) -> float:
        line = [ln for ln in tandem(env, "device", "predict", model, str(root / "later.parquet")).splitlines()
                if ln.startswith("mae:")][0]
        return float(line.split()[1])

    assert mae(personal) < mae(base)


def test_the_tasks_committed_suites_are_current(published):
    env, _, _, _ = published
    out = tandem(env, "expectations", "--check")  # exits 1 when a file differs from the task's schema
    assert "expectations/grunfeld/shared_batch.json: up to date" in out


def test_evaluate_compares_generic_and_personalized_errors_over_folds_and_seeds(published):
    env, root, _, _ = published
    out = tandem(env, "evaluate", "--folds", "3", "--seeds", "2")  # through the Prefect flow
    assert "MAE" in out and "RMSE" in out
    result = json.loads((root / "home" / "reports" / "evaluation.json").read_text())
    c = result["claims"]
    assert (c["folds"], c["seeds"], c["users"], c["target"]) == (3, 2, 11, "log_invest")
    for seed in (0, 1):  # every firm never shares in exactly one fold of each seed
        held = [u for r in result["runs"] if r["seed"] == seed for u in r["users"]]
        assert len(held) == len(set(held)) == 11
    for method in ("generic", "personalized", "own_mean", "local_only"):
        assert c[f"{method}_rmse_mean"] >= c[f"{method}_mae_mean"] > 0
    # the claim the task exists for: the on-device update lowers the error of the users who never share
    assert c["personalized_mae_mean"] < c["generic_mae_mean"]
    assert c["personalization_mae_change_ci95"][1] < 0
    assert (root / "home" / "reports" / "mae_per_user.png").stat().st_size > 0
    client = MlflowClient(f"sqlite:///{root / 'home' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("tandem/evaluation").experiment_id])
    assert run.data.metrics["personalized_mae_mean"] == pytest.approx(c["personalized_mae_mean"])


def test_the_rounds_simulation_says_in_one_line_that_it_compares_classifiers(published):
    env, _, _, _ = published
    done = subprocess.run([*TANDEM, "evaluate", "--simulate"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "compares classifiers" in done.stderr + done.stdout and "Traceback" not in done.stderr
