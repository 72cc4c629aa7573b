"""The `tandem` command starts without its heavy libraries (issue 17): listing commands, tasks, keys
and releases loads no torch, Prefect, MLflow or Great Expectations. Checked in fresh processes by
what is in sys.modules, not by a time bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "prefect", "mlflow", "great_expectations", "coremltools")

LOADED_AFTER = """
import json, sys
from tandem.cli.errors import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(tmp_path / "home")}
    env.pop("TANDEM_STORE", None)
    done = subprocess.run([sys.executable, "-c", LOADED_AFTER, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    code = f"import sys, tandem.cli.main; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["keys", "--help"], ["releases"], ["stack", "--help"]])
def test_light_commands_run_without_heavy_libraries(tmp_path, args):
    out = run(tmp_path, *args)
    assert out["code"] == 0, out
    # `stack` drives Prefect's server and worker, so it may load Prefect, nothing else heavy
    allowed = {"prefect"} if args[0] == "stack" else set()
    assert set(out["heavy"]) <= allowed, out


def test_a_heavy_command_still_loads_what_it_needs(tmp_path):
    """The lazy sub-commands are the real ones: `evaluate --help` loads the evaluation library."""
    out = run(tmp_path, "evaluate", "--help")
    assert out["code"] == 0 and "torch" in out["heavy"], out
