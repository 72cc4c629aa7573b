"""Run parameters a team can trust (issue 17): a params file that is not JSON or names a parameter that
does not exist is refused in one line (a guessed name used to be silently ignored), `--epochs 0` is
refused, a blocked candidate's reason names the setting that moves its threshold, and the thresholds
a candidate was judged by are in its MLflow run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tandem.cli.errors import main
from tandem.release import candidate
from tandem.release.gates import comparison_gate
from tandem.release.params import GateThresholds, ParamsError, RunParams, load_run_params
from tandem.release.tracker import Tracker
from tandem.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def tandem(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(home)}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text and "unexpected" not in text, text
    assert all(w in text for w in words), text
    return text


@pytest.mark.parametrize("content, words", [
    ('{"train": {"epoch": 3}, "gate": {"min_accuracy": 0.5}}', ["unknown parameters", "train.epoch", "gate"]),
    ("{not json", ["is not JSON"]),
    ("[1, 2]", ["not an object"]),
])
def test_a_params_file_that_cannot_mean_what_it_says_is_refused_in_one_line(tandem_home, tmp_path, capsys, content, words):
    """The real entry point in this process (the libraries a run needs load once for the three cases)."""
    params = tmp_path / "params.json"
    params.write_text(content)
    code = main(["run", "--params-file", str(params)])
    text = capsys.readouterr()
    errors = [line for line in (text.out + text.err).splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "unexpected" not in errors[0], text
    assert all(w in errors[0] for w in words), errors[0]
    assert not (tandem_home / "mlflow.db").exists()  # refused before MLflow or the store were touched


def test_zero_epochs_is_refused_before_any_work(tmp_path):
    one_line(tandem(tmp_path / "home", "run", "--epochs", "0"), "--epochs")
    assert not (tmp_path / "home" / "mlflow.db").exists()  # refused before the store or MLflow were touched


def test_known_nested_names_load_and_unknown_ones_are_all_named():
    params = load_run_params('{"train": {"epochs": 3}, "gates": {"min_accuracy": 0.5}, "channel": "production"}')
    assert (params.train.epochs, params.gates.min_accuracy, params.channel) == (3, 0.5, "production")
    with pytest.raises(ParamsError, match="gates.min_acuracy, dp_sgd.nois"):
        load_run_params('{"gates": {"min_acuracy": 0.5}, "dp_sgd": {"nois": 1}}')


def test_the_floor_message_names_the_setting_that_moves_it():
    t = GateThresholds()
    out = comparison_gate({"accuracy": t.min_accuracy - 0.01, "macro_f1": 0.5, "gain": 0.0}, None, None, t)
    assert not out["passed"] and "gates.min_accuracy" in out["failures"][0] and "--params-file" in out["failures"][0]
    assert out["thresholds"]["min_accuracy"] == t.min_accuracy
    production = {"accuracy": 0.9, "macro_f1": 0.9, "gain": 0.2}
    out = comparison_gate({"accuracy": 0.8, "macro_f1": 0.8, "gain": 0.0}, production, "3", t)
    named = " ".join(out["failures"])
    for setting in ("max_accuracy_drop", "max_macro_f1_drop", "max_personalization_gain_drop"):
        assert f"gates.{setting}" in named, named


def test_the_thresholds_are_logged_to_the_candidates_mlflow_run(tandem_home):
    tracker = Tracker(Settings())
    params = RunParams.model_validate({"gates": {"min_accuracy": 0.55, "max_accuracy_drop": 0.04}})
    snapshot = SimpleNamespace(snapshot_id="s-test", manifest={"rows": 10, "users": 2})  # only what is logged
    run_id = candidate.start_tracking(tracker, snapshot, params, {"new_batches": 1, "accepted": 1, "quarantined": 0})
    logged = tracker.client.get_run(run_id).data.params
    assert logged["gates.min_accuracy"] == "0.55" and logged["gates.max_accuracy_drop"] == "0.04", logged
    assert "gates.parity_tolerance" in logged


def test_a_blocked_candidate_exits_3_and_names_the_setting(tmp_path):
    """A CI script must not carry on as if it had published: the gates' block is exit code 3."""
    from tandem.release.signing import generate

    private, public = generate()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(tmp_path / "home"), "TANDEM_SIGNING_KEY": private,
           "TANDEM_RELEASE_PUBLIC_KEYS": public, "TANDEM_PSEUDONYM_KEY": "params-key"}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "tandem.cli"]
    shared = subprocess.run([*cli, "share", "--source", "synthetic", "--users", "8"], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    assert shared.returncode == 0, shared.stderr[-2000:]
    params = tmp_path / "params.json"
    params.write_text('{"train": {"epochs": 2}, "gates": {"min_accuracy": 1.0}}')
    done = subprocess.run([*cli, "run", "--params-file", str(params)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "blocked" in done.stdout and "gates.min_accuracy" in done.stdout, done.stdout[-2000:]
    assert not list((tmp_path / "home" / "store").glob("releases/*/*/manifest.json"))
