"""The task travels as one object (issue 17): no module reads the active task when it is imported, no
classifier-or-regressor branch lives outside the two kinds, and one process serves two tasks one
after the other."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = REPO / "tandem" / "task" / "kinds"

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import tandem, flows, tasks
names = []
for package in (tandem, flows, tasks):
    names.append(package.__name__)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("__main__") or ".proto." in info.name:
            continue
        names.append(info.name)
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_module_imports_while_the_task_setting_names_nothing(tmp_path):
    """A task is resolved when an entry point runs, never at import: with TANDEM_TASK naming a folder that
    does not exist, every module of the library, the tasks and the flows still imports."""
    env = {**os.environ, "TANDEM_TASK": str(tmp_path / "no-such-task"), "TANDEM_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 100  # the walk found the modules (not an empty package list)


def _python_files():
    for root in ("tandem", "flows", "tasks"):
        yield from (p for p in (REPO / root).rglob("*.py") if "proto" not in p.parts)


def _kind_branches(tree: ast.AST) -> list[int]:
    """Lines that ask whether the task is a classifier: `CLASSIFICATION`, `.classification`, or a
    comparison with the target kind's literal "classes"."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "CLASSIFICATION":
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in ("classification", "CLASSIFICATION"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value == "classes" for c in [node.left, *node.comparators]):
            lines.append(node.lineno)
    return lines


def test_classifier_or_regressor_is_asked_of_the_kind_only():
    """What differs between the two kinds lives in `tandem/task/kinds/`; elsewhere code asks the kind."""
    offenders = []
    for path in _python_files():
        if KINDS in path.parents or path == REPO / "tandem" / "task" / "definition.py":
            continue
        offenders += [f"{path.relative_to(REPO)}:{line}" for line in _kind_branches(ast.parse(path.read_text()))]
    assert not offenders, "branches on the task kind outside tandem/task/kinds/: " + ", ".join(offenders)


def test_nothing_reads_the_active_task():
    """No `tandem.task.active()`, no TANDEM_TASK read by hand, no module-level `__getattr__` serving old
    task constants: the task comes from Settings at an entry point and is passed down."""
    offenders = []
    for path in _python_files():
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "active" and isinstance(node.value, ast.Name) \
                    and node.value.id in ("tasks", "task"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} calls {node.value.id}.active")
            if isinstance(node, ast.Constant) and node.value == "TANDEM_TASK" and path.name != "settings.py":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} reads TANDEM_TASK")
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            offenders.append(f"{path.relative_to(REPO)} serves module attributes lazily")
    assert not offenders, "; ".join(offenders)
