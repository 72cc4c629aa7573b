"""The architecture is checked, not remembered: import-linter's contracts (pyproject.toml) hold, and
break when a module crosses a layer; no library module imports Tandem code inside a function."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The packages and the contracts, in a folder of their own (so a violation can be planted)."""
    root = tmp_path_factory.mktemp("arch")
    for name in ("tandem", "flows", "tasks"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("tandem/contract/schema.py", "import tandem.release.layout", "tandem.contract is not allowed to import tandem.release"),
    ("tandem/release/gates/__init__.py", "import flows.train_release", "tandem is not allowed to import flows"),
    ("tandem/device/runtime.py", "import pandas", "tandem.device is not allowed to import pandas"),
])
def test_a_planted_violation_breaks_a_contract(copy, module, line, broken):
    path = copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # planted by the test\n")
    try:
        result = lint(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout[-2000:]


def test_no_tandem_import_inside_a_function():
    """Except at the CLI's edge (tandem/cli/): a command loads the library it needs when it runs, so
    `tandem --help` does not load torch, Prefect, MLflow and GX (issue 17; test_cli_startup.py)."""
    offenders = []
    for path in (REPO / "tandem").rglob("*.py"):
        if "proto" in path.parts or path.parent == REPO / "tandem" / "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    names = ([a.name for a in inner.names] if isinstance(inner, ast.Import)
                             else [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [])
                    if any(n == "tandem" or n.startswith(("tandem.", "flows", "tasks")) for n in names):
                        offenders.append(f"{path.relative_to(REPO)}:{inner.lineno}")
    assert offenders == []


def test_no_task_names_outside_the_task_folders():
    """The library is any app's: no built-in task's labels, channels or data set name appear in
    tandem/ outside tandem/builtin_tasks/ (checked for every built-in task, not only HAR)."""
    import re

    from tandem.task import builtin

    words = {"hapt"}
    for task in builtin():
        words |= set(getattr(task.target, "labels", []))
        channels = task.inputs.channels if task.inputs.kind == "sensor" else task.inputs.columns
        words |= {c.name for c in channels if len(c.name) > 5}  # short column names ("value") are plain English
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words))) + r")\b", re.IGNORECASE)
    found = []
    for path in (REPO / "tandem").rglob("*"):
        if path.suffix not in (".py", ".json", ".in", ".yaml", ".md") or "builtin_tasks" in path.parts:
            continue
        for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert len(words) > 8 and not found, "\n".join(found[:20])
