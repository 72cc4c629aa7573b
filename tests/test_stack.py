"""`tandem stack up/down` end to end: moto S3, an MLflow server, a Prefect server, the deployments of
deployments/prefect.yaml and a process worker, all on free ports under a temporary TANDEM_HOME; runs
through the worker (a tiny probe flow for the mechanics, and the real train-and-release flow);
infra/ci/retrain.sh's exit status; then `down` and every started process is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect import flow

from tandem.ops import stack

REPO = Path(__file__).resolve().parents[1]
RETRAIN = REPO / "infra" / "ci" / "retrain.sh"

pytestmark = pytest.mark.slow


@flow(name="stack-probe")
def stack_probe(out: str = "", fail: bool = False, sleep: float = 0.0, touch: bool = False) -> None:
    """Worker mechanics only: records where and with which settings it ran, optionally touches the
    stack's S3 store and MLflow server, optionally fails."""
    t0 = time.time()
    time.sleep(sleep)
    if touch:
        import tempfile

        from mlflow import MlflowClient

        from tandem.data.store import store_from_settings
        from tandem.settings import Settings

        store_from_settings(Settings()).put("probe/hello.txt", b"hello")
        c = MlflowClient()
        exp = c.get_experiment_by_name("stack-probe") or c.get_experiment(c.create_experiment("stack-probe"))
        run = c.create_run(exp.experiment_id)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "probe.txt").write_text("artifact")
            c.log_artifact(run.info.run_id, str(Path(d, "probe.txt")))
        c.set_terminated(run.info.run_id)
    if out:
        keys = ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "TANDEM_HOME")
        Path(out).write_text(json.dumps({"start": t0, "end": time.time(), "cwd": os.getcwd(),
                                         "env": {k: os.environ.get(k) for k in keys}}))
    if fail:
        raise RuntimeError("the probe was asked to fail")


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _post(url: str, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _flow_imports(module: str) -> str | None:
    """None when the module imports, else the error (in a subprocess: nothing leaks into this one)."""
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    home = tmp_path_factory.mktemp("stack-home")
    messages: list[str] = []
    t0 = time.monotonic()
    info, started = stack.up(home, log=messages.append)
    elapsed = time.monotonic() - t0
    print(f"stack up in {elapsed:.1f} s:", *messages, sep="\n  ")
    assert started
    env = {**os.environ, **stack.read_env_file(home), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_HOME", None)  # the CLI runs as a client of the stack, with its own profile dir
    env["PREFECT_HOME"] = str(home / "client-prefect")
    yield {"home": home, "info": info, "env": env, "pids": stack.started_pids(home), "elapsed": elapsed}
    stack.down(home, log=lambda s: None)  # safety net if a test failed before test_down_stops_everything


def test_services_are_healthy(up):
    info, home = up["info"], up["home"]
    report = stack.health(home)
    assert all(s["alive"] and s["healthy"] for s in report.values()), report
    assert stack.http_ok(f"{info.s3_url}/") and stack.http_ok(f"{info.mlflow_url}/health")
    assert _get(f"{info.prefect_api_url}/health") is True
    for name in stack.SERVICES:  # one log and one pid file per process, under TANDEM_HOME/stack
        assert (home / "stack" / f"{name}.log").is_file() and (home / "stack" / f"{name}.pid").is_file()
    assert all(url.startswith("http://127.0.0.1:") for url in (info.s3_url, info.mlflow_url, info.prefect_url))
    assert len(set(info.ports.values())) == 3


def test_env_file_has_the_settings(up):
    info, env = up["info"], stack.read_env_file(up["home"])
    assert env["PREFECT_API_URL"] == info.prefect_api_url
    assert env["MLFLOW_TRACKING_URI"] == info.mlflow_url
    assert env["TANDEM_STORE"] == f"s3://{info.bucket}/store"
    assert env["TANDEM_S3_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == info.s3_url
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"]
    # a shell can source it
    out = subprocess.run(["bash", "-c", f". {stack.env_file(up['home'])} && echo $PREFECT_API_URL"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == info.prefect_api_url


def test_up_again_says_already_up(up):
    info, started = stack.up(up["home"], log=lambda s: None)
    assert not started and info.ports == up["info"].ports
    assert stack.started_pids(up["home"]) .keys() == up["pids"].keys()


def test_deployments_are_registered(up):
    api = up["info"].prefect_api_url
    deployments = {d["name"]: d for d in _post(f"{api}/deployments/filter", {})}
    flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
    names = {f"{flows[d['flow_id']]}/{n}" for n, d in deployments.items()}
    expected = {"train-and-release/nightly", "train-and-release/manual-retrain", "promote/promote-production",
                "rollback/rollback-production", "evaluate/on-demand", "ingest/hourly",
                "evaluate-protocol/folds-x-seeds", "evaluate-regression/regression-folds-x-seeds"}
    assert expected <= names, (names, up["info"].deploy_errors)
    (hourly,) = deployments["hourly"]["schedules"]
    assert hourly["schedule"]["cron"] == "15 * * * *" and hourly["active"]

    nightly, manual = deployments["nightly"], deployments["manual-retrain"]
    (schedule,) = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "Europe/Berlin"
    assert schedule["active"]
    assert manual["schedules"] == []
    for d in deployments.values():
        assert d["work_pool_name"] == stack.WORK_POOL
        # resolved on the worker when a run starts, not baked in at deploy time
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $TANDEM_REPO }}"}}]
    # the train deployments share the "train" queue, limited to one run at a time
    assert nightly["work_queue_name"] == manual["work_queue_name"] == "train"
    assert _get(f"{api}/work_pools/{stack.WORK_POOL}/queues/train")["concurrency_limit"] == 1
    assert manual["global_concurrency_limit"]["limit"] == 1
    assert _get(f"{api}/work_pools/{stack.WORK_POOL}")["type"] == "process"

    assert _flow_imports("flows.train_release") is None
    schema = manual["parameter_openapi_schema"]
    assert schema["properties"]["params"]["$ref"] == "#/definitions/RunParams"
    assert {"RunParams", "TrainConfig", "DeviceUpdateConfig"} <= set(schema["definitions"])
    assert "epochs" in schema["definitions"]["TrainConfig"]["properties"]


def _deploy_probe(up) -> None:
    if getattr(_deploy_probe, "done", None) == up["home"]:
        return
    r = subprocess.run([*stack._bin("prefect"), "--no-prompt", "deploy", "tests/test_stack.py:stack_probe",
                        "--name", "probe", "--pool", stack.WORK_POOL, "--work-queue", "train"],
                       cwd=REPO, env=up["env"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    _deploy_probe.done = up["home"]


def _retrain(up, *args: str, deployment: str | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(up["env"])
    if deployment:
        env["RETRAIN_DEPLOYMENT"] = deployment
    return subprocess.run(["bash", str(RETRAIN), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_ci_script_exit_status_follows_the_run(up, tmp_path):
    _deploy_probe(up)
    out = tmp_path / "ok.json"
    ok = _retrain(up, f"out={out}", "touch=true", deployment="stack-probe/probe")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    seen = json.loads(out.read_text())
    info = up["info"]
    # the worker handed the stack's settings to the flow run, which ran in the checkout
    assert seen["env"]["TANDEM_STORE"] == f"s3://{info.bucket}/store"
    assert seen["env"]["MLFLOW_TRACKING_URI"] == info.mlflow_url
    assert seen["env"]["TANDEM_S3_ENDPOINT_URL"] == info.s3_url
    assert Path(seen["cwd"]).resolve() == REPO
    # ... so the store is the S3 bucket and MLflow artifacts went through the server into S3
    import boto3

    s3 = boto3.client("s3", endpoint_url=info.s3_url, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=info.bucket).get("Contents", [])]
    assert "store/probe/hello.txt" in keys
    assert any(k.startswith("mlartifacts/") and k.endswith("/probe.txt") for k in keys), keys

    failed = _retrain(up, "fail=true", deployment="stack-probe/probe")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed" in failed.stdout + failed.stderr

    unknown = _retrain(up, "no_such_parameter=1", deployment="stack-probe/probe")
    assert unknown.returncode != 0


def test_ci_script_needs_prefect_api_url(up):
    env = {k: v for k, v in up["env"].items() if k != "PREFECT_API_URL"}
    r = subprocess.run(["bash", str(RETRAIN)], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "PREFECT_API_URL is not set" in r.stderr


def test_train_queue_runs_one_at_a_time(up, tmp_path):
    """Two runs on the train queue (limit 1): the second starts only after the first ended."""
    _deploy_probe(up)
    procs = [subprocess.Popen(["bash", str(RETRAIN), f"out={tmp_path / f'r{i}.json'}", "sleep=3"], cwd=REPO,
                              env={**up["env"], "RETRAIN_DEPLOYMENT": "stack-probe/probe"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    a, b = sorted((json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)), key=lambda r: r["start"])
    assert b["start"] >= a["end"], (a, b)


def test_manual_retrain_with_changed_parameters_publishes_to_the_stack(up):
    """Devices share into the stack's S3 landing zone; CI's retrain script runs the real manual-retrain
    deployment with changed parameters through the worker; the release lands in S3 and the run in
    the MLflow server. A parameter outside RunParams' bounds makes the script exit non-zero."""
    error = _flow_imports("flows.train_release")
    assert error is None, error
    env = {**up["env"], "TANDEM_PSEUDONYM_KEY": "stack-test-key"}
    shared = subprocess.run([sys.executable, "-m", "tandem.cli", "share", "--source", "synthetic", "--users", "6",
                             "--holdout-every", "3", "--via", env["TANDEM_GATEWAY_URL"]],  # through the stack's gateway
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert shared.returncode == 0 and "through the device gateway" in shared.stdout, shared.stdout + shared.stderr

    r = _retrain(up, "params.train.epochs=20", "params.train.hidden_sizes=[32,16]", "params.device.epochs=15",
                 timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr

    info = up["info"]
    import boto3
    from mlflow import MlflowClient

    s3 = boto3.client("s3", endpoint_url=info.s3_url, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    pointer = json.loads(s3.get_object(Bucket=info.bucket, Key="store/channels/tandem-har/staging.json")["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=info.bucket, Key=f"store/{pointer['manifest']}")["Body"].read())
    assert manifest["training"]["params"]["hidden_sizes"] == [32, 16]
    run = MlflowClient(info.mlflow_url).get_run(manifest["mlflow"]["run_id"])
    assert run.data.params["train.epochs"] == "20" and "eval_accuracy" in run.data.metrics

    bad = _retrain(up, "params.train.epochs=0", timeout=300)
    assert bad.returncode != 0, bad.stdout + bad.stderr


def test_down_stops_everything(up):
    home, pids = up["home"], up["pids"]
    assert set(pids) == set(stack.SERVICES)
    before = stack.started_pids(home)  # now including e.g. children started since
    results = stack.down(home, log=lambda s: None)
    assert all(r["action"] == "stopped" for r in results), results
    import psutil

    for name, group in {**pids, **before}.items():
        for pid in group:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, (name, pid)
    assert not list((home / "stack").glob("*.pid"))
    assert not any(stack.is_running(home, n) for n in stack.SERVICES)
    # and down again is harmless
    assert all(r["action"] == "not started" for r in stack.down(home, log=lambda s: None))
