"""The device runtime works from the `.mlmodel` (and the release's feature spec) alone: no module of
`tandem/device/` reads a task or the featurization derived from one (issue 17: the golden path defaulted
to the process's active task); whoever cuts golden vectors passes the featurizer in."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import tandem.device
from tandem.device.golden import golden_vectors

DEVICE = Path(tandem.device.__file__).parent


def test_no_device_module_imports_a_task_or_its_featurization():
    offenders = []
    for path in sorted(DEVICE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            imported = names + [f"{names[0]}.{a.name}" for a in getattr(node, "names", [])] if names else []
            if any(n == "tandem.task" or n.startswith("tandem.task.") or n.startswith("tandem.contract.features")
                   for n in imported):
                offenders.append(f"{path.relative_to(DEVICE.parent.parent)}:{node.lineno}")
    assert not offenders, offenders


def test_golden_vectors_take_the_featurizer():
    assert inspect.signature(golden_vectors).parameters["featurize"].default is inspect.Parameter.empty
