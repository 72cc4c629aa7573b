"""`tandem tasks` lists the built-in tasks; `tandem init` scaffolds a task folder whose task.yaml reads,
whose data file loads as a user would load it (TANDEM_TASK=<folder>, a process of its own) and
whose example data a model learns; it refuses a non-empty folder and an unknown template."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tandem import task as tasks
from tandem.cli.errors import main
from tandem.cli.main import app
from tandem.cli.tasks import templates
from tandem.contract import feature_ops
from tandem.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# Run as a user would: TANDEM_TASK names the folder, the process resolves it once from its settings.
# Reads the folder's data file, then trains on all users but one and scores the one left out.
LOAD_AND_LEARN = """
import json
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tandem import task as tasks
from tandem.contract import features
from tandem.fleet.task_source import read_table
from tandem.settings import Settings
from tandem.task.kinds import kind_of

task = tasks.resolve(Settings().task)
classifier = kind_of(task).higher_is_better  # accuracy (a classifier) or MAE (a regressor)
fleet = read_table(task)
X = [features.of(task).featurize(u.windows) for u in fleet]
held_out, rest = X[0], np.concatenate(X[1:])
y_rest = np.concatenate([u.labels for u in fleet[1:]])
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000) if classifier else Ridge())
model.fit(rest, y_rest)
predicted, truth = model.predict(held_out), fleet[0].labels
print(json.dumps({
    "task": task.name, "users": len(fleet), "examples": [len(u.labels) for u in fleet],
    "window": list(fleet[0].windows.shape[1:]),
    "labels": sorted({str(v) for u in fleet for v in u.labels}) if classifier else [],
    "target_range": [] if classifier else [float(min(u.labels.min() for u in fleet)),
                                           float(max(u.labels.max() for u in fleet))],
    "score": float(np.mean(predicted == truth)) if classifier else float(np.mean(np.abs(predicted - truth))),
    "baseline_mae": None if classifier else float(np.mean(np.abs(truth - y_rest.mean()))),
}))
"""


def load_as_user(folder: Path) -> dict:
    env = {**os.environ, "TANDEM_TASK": str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", LOAD_AND_LEARN], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tasks_lists_the_builtin_tasks_with_their_kinds_and_marks_the_active_one():
    table = runner.invoke(app, ["tasks"])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[2].strip(): line for line in table.output.splitlines() if line.count("│") > 5}
    assert "classification" in rows["har"] and "sensor" in rows["har"]
    assert "regression" in rows["grunfeld"] and "tabular" in rows["grunfeld"]
    served = tasks.resolve(Settings().task).name
    assert "*" in rows[served] and sum("*" in r for r in rows.values()) == 1

    listed = json.loads(runner.invoke(app, ["tasks", "--json"]).output)
    kinds = {t["name"]: (t["kind"], t["inputs"]) for t in listed}
    assert kinds["har"] == ("classification", "sensor") and kinds["grunfeld"] == ("regression", "tabular")
    assert [t["name"] for t in listed if t["active"]] == [served]


def test_a_task_folder_in_tandem_task_is_listed_as_the_active_one(tmp_path, monkeypatch):
    folder = tmp_path / "Shop Returns"
    assert runner.invoke(app, ["init", str(folder), "--template", "tabular-classification"]).exit_code == 0
    monkeypatch.setenv("TANDEM_TASK", str(folder))
    listed = json.loads(runner.invoke(app, ["tasks", "--json"]).output)
    assert [(t["name"], t["folder"]) for t in listed if t["active"]] == [("shop-returns", str(folder.resolve()))]
    assert {"har", "grunfeld"} <= {t["name"] for t in listed}


def test_an_invalid_task_folder_is_listed_with_its_error_and_the_exit_is_non_zero(tmp_path):
    """Through the real command in its own process: a folder whose task.yaml does not load is shown,
    not silently left out (issue 17)."""
    folder = tmp_path / "broken-task"
    folder.mkdir()
    (folder / "task.yaml").write_text("name: broken-task\nkind: [classification\n")
    env = {**os.environ, "TANDEM_TASK": str(folder), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "tasks", "--json"], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    listed = json.loads(done.stdout[:done.stdout.rindex("]") + 1])
    broken = [t for t in listed if t["kind"] == "invalid"]
    assert [t["name"] for t in broken] == ["broken-task"] and "not YAML" in broken[0]["error"], listed
    assert {"har", "grunfeld"} <= {t["name"] for t in listed}
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "task.yaml" in errors[0], done.stdout + done.stderr


def test_reference_show_and_add_for_a_regression_task(tmp_path):
    """`tandem reference show`/`add` used to raise KeyError: 'label_counts' for any regression task."""
    env = {**os.environ, "TANDEM_TASK": "grunfeld", "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(tmp_path / "home"),
           "TANDEM_PSEUDONYM_KEY": "reference-key", "COLUMNS": "200"}
    env.pop("TANDEM_STORE", None)
    cli = [sys.executable, "-m", "tandem.cli"]
    shared = subprocess.run([*cli, "share"], capture_output=True, text=True, env=env, cwd=ROOT)  # registers a reference set
    assert shared.returncode == 0, shared.stderr[-2000:]
    shown = subprocess.run([*cli, "reference", "show"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert shown.returncode == 0 and "reference set v1" in shown.stdout and "targets" in shown.stdout, shown.stdout + shown.stderr
    registered = next((tmp_path / "home" / "store" / "reference").rglob("recordings.npz"))
    again = subprocess.run([*cli, "reference", "add", str(registered)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert again.returncode == 0 and "already registered: reference set v1" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("template, kind, inputs", [
    ("sensor-classification", "classification", "sensor"),
    ("tabular-classification", "classification", "tabular"),
    ("tabular-regression", "regression", "tabular"),
])
def test_init_writes_a_task_that_reads_loads_and_can_be_learned(tmp_path, template, kind, inputs):
    folder = tmp_path / "My_App 2"
    result = runner.invoke(app, ["init", str(folder), "--template", template])
    assert result.exit_code == 0, result.output
    for step in ("export TANDEM_TASK=", "tandem share --source task", "tandem run", "tandem pull"):
        assert step in result.output

    task = tasks.read(folder)
    assert (task.name, task.kind, task.inputs.kind) == ("my-app-2", kind, inputs)
    assert task.data.source.kind == "table" and (folder / task.data.source.path).is_file()
    names = task.inputs.channels if inputs == "sensor" else task.inputs.columns
    feature_ops.check(task.featurization, tuple(c.name for c in names))
    text = (folder / "task.yaml").read_text()
    uncommented = [line for line in text.splitlines() if re.match(r"^\s*[a-z_]+:", line) and "#" not in line
                   and not line.startswith("description:")]  # the description's comment is the line above it
    assert uncommented == []

    loaded = load_as_user(folder)
    assert loaded["task"] == "my-app-2" and loaded["users"] >= 4 and min(loaded["examples"]) >= 20
    if inputs == "sensor":
        assert loaded["window"] == [task.inputs.window, len(task.inputs.channels)]
    if kind == "classification":
        assert loaded["labels"] == sorted(task.target.labels)
        assert loaded["score"] > 1.5 / len(task.target.labels)  # well above chance on a user never trained on
    else:
        lo, hi = loaded["target_range"]
        assert task.target.min <= lo < hi <= task.target.max
        assert loaded["score"] < 0.75 * loaded["baseline_mae"]  # well below predicting the mean

    again = tmp_path / "again"
    assert runner.invoke(app, ["init", str(again), "--template", template, "--name", "my-app-2"]).exit_code == 0
    assert (again / "data.csv").read_bytes() == (folder / "data.csv").read_bytes()  # seeded: the same everywhere
    assert (again / "task.yaml").read_text() == text


def one_line(capsys, *args) -> str:
    """Through the `tandem` console script's entry point: a non-zero exit and one error line."""
    code = main(list(args))
    out = capsys.readouterr()
    text = out.out + out.err
    errors = [line for line in text.splitlines() if line.lower().startswith("error:")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


def test_init_refuses_a_folder_that_is_not_empty_unless_forced(tmp_path, capsys):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code != 0 and not (folder / "task.yaml").exists()
    assert "--force" in one_line(capsys, "init", str(folder))
    assert not (folder / "task.yaml").exists()

    assert runner.invoke(app, ["init", str(folder), "--force"]).exit_code == 0
    assert tasks.read(folder).name == "busy" and (folder / "notes.txt").read_text() == "mine"


def test_init_refuses_an_unknown_template_and_a_bad_name(tmp_path, capsys):
    result = runner.invoke(app, ["init", str(tmp_path / "a"), "--template", "image-segmentation"])
    assert result.exit_code != 0 and not (tmp_path / "a").exists()
    line = one_line(capsys, "init", str(tmp_path / "a"), "--template", "image-segmentation")
    assert "image-segmentation" in line and all(t in line for t in templates())
    assert len(templates()) == 3

    assert "--name" in one_line(capsys, "init", str(tmp_path / "b"), "--name", "Not A Name")
    assert not (tmp_path / "b").exists()


def test_the_docs_give_every_operations_current_spec():
    """docs/bring-your-own-task.md has a section per operation of the library whose example step's
    spec() is exactly the JSON printed there (regenerate with the script on that page)."""
    page = (ROOT / "docs" / "bring-your-own-task.md").read_text()
    sections = dict(re.findall(r"^### `(\w+)`\n(.*?)(?=^### |^## )", page, re.S | re.M))
    assert sorted(sections) == sorted(feature_ops.OPS)
    window, rate = 40, 20.0  # the script's example: the sensor template's window and rate
    for op, text in sections.items():
        step = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))[0]
        shown = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
        module = feature_ops.OPS[op]
        assert step["op"] == op and f"Kind: **{module.KIND}**, version {module.VERSION}" in text
        assert shown == json.loads(json.dumps(module.spec(step, window, rate))), op


def test_tune_keeps_a_folds_choice_in_the_task_folder_and_the_evaluation_reads_it(tmp_path, monkeypatch):
    """Issue 17: an untuned task trained with another task's tuned values; now it has its own defaults,
    and `tandem tune` studies its own on the sharing users of a fold (a regression task here: MAE)."""
    from tandem.evaluation.tuning import train_for_fold

    folder = tmp_path / "tuned"
    assert runner.invoke(app, ["init", str(folder), "--template", "tabular-regression"]).exit_code == 0
    monkeypatch.setenv("TANDEM_TASK", str(folder))
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path / "home"))
    task = tasks.resolve(str(folder))
    assert train_for_fold(task, 2)(0).epochs == 100  # before a study: the generic default (docs)
    done = runner.invoke(app, ["tune", "--fold", "0", "--folds", "2", "--trials", "2", "--seeds", "1",
                               "--inner-folds", "2", "--no-mlflow"])
    assert done.exit_code == 0, done.output
    stored = json.loads((folder / "tuned_models.json").read_text())
    assert set(stored) == {"2:0"} and stored["2:0"]["best"]["mean"] > 0  # a mean absolute error
    chosen = stored["2:0"]["train_config"]
    for fold in (0, 1):  # fold 1 has no study of its own: fold 0's choice (docs/evaluation.md)
        config = train_for_fold(task, 2)(fold)
        assert (config.hidden_sizes, config.learning_rate, config.epochs) == (
            chosen["hidden_sizes"], chosen["learning_rate"], chosen["epochs"])
