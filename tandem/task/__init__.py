"""Tasks: the app's learning task a command serves (``Settings.task``, i.e. ``TANDEM_TASK``: a built-in
name or a folder).

Built-in tasks are folders under ``tandem/builtin_tasks/``; a team's own task is any folder with a
``task.yaml`` (``tandem init DIR`` makes one). An entry point (a CLI command, a flow, the gateway, a
test) resolves its task once with `resolve` and passes the object down; no module reads it at import.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from pathlib import Path
from typing import TypeVar

from tandem.task.definition import Task, TaskError, read

BUILTIN = Path(__file__).resolve().parents[1] / "builtin_tasks"


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


Derived = TypeVar("Derived")


def once_per_task(build: Callable[[Task], Derived]) -> Callable[[Task], Derived]:
    """`build(task)` computed once per task definition (keyed by its tag, which names its digest): what a
    task derives (its featurization, its batch format) is asked for per batch and per step."""
    built: dict[str, Derived] = {}

    @wraps(build)
    def of(task: Task) -> Derived:
        if task.tag not in built:
            built[task.tag] = build(task)
        return built[task.tag]
    return of


__all__ = ["Task", "TaskError", "builtin", "once_per_task", "resolve", "read"]
