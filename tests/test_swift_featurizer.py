"""The Swift featurizer (`tandem-device featurize`) against Python's features computed now, for every
built-in task and every `tandem init` template, within 1e-9; what it refuses, in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests import feature_cases
from tests.swift_build import run_device

TOLERANCE = 1e-9
TASKS = feature_cases.builtin_names() + feature_cases.template_names()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """{task: spec, windows and Python features}, every task computed in this one process."""
    return feature_cases.task_records(tmp_path_factory.mktemp("templates"))


def featurize(binary, folder, spec: dict, windows: list, *extra: str, check: bool = True):
    (folder / "feature_spec.json").write_text(json.dumps(spec))
    (folder / "windows.json").write_text(json.dumps(windows))
    return run_device(binary, "featurize", "--spec", str(folder / "feature_spec.json"),
                      "--windows", str(folder / "windows.json"), *extra, check=check)


def test_every_builtin_task_and_template_is_covered(records):
    assert set(records) == set(TASKS) and {"har", "grunfeld", "tabular-regression"} <= set(records)


@pytest.mark.parametrize("task", TASKS)
def test_swift_features_match_python(task, records, tandem_device, tmp_path):
    rec = records[task]
    python = np.array(rec["features"])
    windows = rec["windows"]
    if rec["spec"]["input"]["kind"] == "tabular":
        windows = [w[0] for w in windows]  # a tabular task's windows given as rows [c]
    swift = np.array(json.loads(featurize(tandem_device, tmp_path, rec["spec"], windows).stdout))
    assert swift.shape == python.shape == (len(windows), rec["spec"]["n_features"])
    diff = np.abs(swift - python)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    print(f"{task}: {len(windows)} windows x {python.shape[1]} features, max |swift - python| = {diff.max():.3g} "
          f"({rec['cases'][worst[0]]}, {rec['spec']['feature_names'][worst[1]]})")
    assert diff.max() <= TOLERANCE, f"{rec['cases'][worst[0]]} {rec['spec']['feature_names'][worst[1]]}: {diff.max()}"
    if all(step["op"] == "value" for step in rec["spec"]["steps"]):  # copies: printed and read back exactly
        assert (swift == python).all()

    inputs = np.array(json.loads(featurize(tandem_device, tmp_path, rec["spec"], rec["windows"], "--model-input").stdout))
    assert np.abs(inputs - np.array(rec["model_inputs"])).max() <= TOLERANCE


def _refusal(binary, folder, spec, windows):
    done = featurize(binary, folder, spec, windows, check=False)
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_an_unknown_op_or_version_is_refused_in_one_line(records, tandem_device, tmp_path):
    rec = records["har"]
    unknown_op = json.loads(json.dumps(rec["spec"]))
    unknown_op["steps"][2]["op"] = "wavelet"
    assert "unknown feature op wavelet" in _refusal(tandem_device, tmp_path, unknown_op, rec["windows"][:1])

    unknown_version = json.loads(json.dumps(rec["spec"]))
    unknown_version["steps"][0]["version"] = 2
    line = _refusal(tandem_device, tmp_path, unknown_version, rec["windows"][:1])
    assert "lowpass" in line and "version 2 is not implemented" in line


def test_bad_windows_are_refused_not_coerced(records, tandem_device, tmp_path):
    rec = records["grunfeld"]
    assert "not a JSON array of windows of numbers" in _refusal(tandem_device, tmp_path, rec["spec"], [["1000", 20.0]])
    sensor = records["har"]
    short = [sensor["windows"][0][:-1]]
    assert "got 127 samples" in _refusal(tandem_device, tmp_path, sensor["spec"], short)


def test_real_hapt_windows_match_the_golden_features(tandem_device, tmp_path):
    """tests/fixtures: real HAPT windows and the features the device golden path computed (kept current
    by test_feature_ops)."""
    fixtures = Path(__file__).parent / "fixtures"
    spec = json.loads((fixtures / "feature_spec.json").read_text())
    golden = json.loads((fixtures / "feature_golden.json").read_text())["windows"]
    swift = np.array(json.loads(featurize(tandem_device, tmp_path, spec, [w["raw"] for w in golden]).stdout))
    diff = np.abs(swift - np.array([w["features"] for w in golden])).max()
    print(f"HAPT golden windows: {len(golden)} windows, max |swift - python| = {diff:.3g}")
    assert diff <= TOLERANCE


def test_make_swift_test_without_a_toolchain_fails_in_one_line(tmp_path):
    """`make test`'s Swift step: no toolchain on PATH is a failure with one line saying what to do;
    TANDEM_SKIP_SWIFT=1 skips on purpose (and says so)."""
    root = Path(__file__).resolve().parents[1]
    make = shutil.which("make")
    env = {k: v for k, v in os.environ.items() if k != "TANDEM_SKIP_SWIFT"}
    env["PATH"] = str(tmp_path)  # an empty folder: no swift, nothing else either
    done = subprocess.run([make, "--no-print-directory", "-C", str(root), "swift-test"], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1 and "no Swift toolchain on PATH" in ours[0] and "TANDEM_SKIP_SWIFT=1" in ours[0]

    skipped = subprocess.run([make, "--no-print-directory", "-C", str(root), "swift-test"],
                             env={**env, "TANDEM_SKIP_SWIFT": "1"}, capture_output=True, text=True)
    assert skipped.returncode == 0 and "skipped on purpose" in skipped.stdout


def test_every_python_feature_op_has_a_swift_twin_of_the_same_version():
    """Each op of tandem/contract/feature_ops has one Swift file in TandemFeatures/Ops with the same
    name and version (a new op or a bumped version on one side only fails here, before any build)."""
    import re

    from tandem.contract.feature_ops import OPS

    ops = Path(__file__).resolve().parents[1] / "swift" / "Sources" / "TandemFeatures" / "Ops"
    swift = {}
    for source in ops.glob("*.swift"):
        text = source.read_text()
        name = re.search(r'static let name = "([a-z0-9_]+)"', text)
        version = re.search(r"static let version = (\d+)", text)
        if name and version:
            swift[name.group(1)] = int(version.group(1))
    assert swift == {op: module.VERSION for op, module in OPS.items()}
