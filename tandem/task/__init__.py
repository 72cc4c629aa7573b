"""Tasks: which app's learning task this process serves (``TANDEM_TASK``: a built-in name or a folder).

Built-in tasks are folders under ``tandem/builtin_tasks/``; a team's own task is any folder with a
``task.yaml`` (``tandem init DIR`` makes one). The active task is read once per process: the
modules that derive the schema, the features and the model read it at import.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from tandem.task.definition import Task, TaskError, read

BUILTIN = Path(__file__).resolve().parents[1] / "builtin_tasks"
DEFAULT = "har"


def builtin() -> list[Task]:
    """Every built-in task, by name."""
    return [read(folder) for folder in sorted(BUILTIN.iterdir()) if (folder / "task.yaml").is_file()]


@lru_cache(maxsize=None)
def resolve(name_or_path: str) -> Task:
    """A built-in task by name, or the task folder at a path."""
    if (BUILTIN / name_or_path / "task.yaml").is_file():
        return read(BUILTIN / name_or_path)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return read(folder)
    names = ", ".join(t.name for t in builtin())
    raise TaskError(f"TANDEM_TASK={name_or_path!r} is neither a built-in task ({names}) nor a task folder")


def active() -> Task:
    """The task this process serves: TANDEM_TASK, or the built-in default. (Read here rather than
    through Settings because the contract modules derive their constants from it at import.)"""
    return resolve(os.environ.get("TANDEM_TASK") or DEFAULT)


__all__ = ["Task", "TaskError", "active", "builtin", "resolve", "read"]
