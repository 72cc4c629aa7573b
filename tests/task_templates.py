"""New teams' tasks for tests, made from `tandem init`'s templates (not the built-ins)."""

from __future__ import annotations

from pathlib import Path

import yaml

import tandem.task
from tandem import task as tasks

TEMPLATES = Path(tandem.task.__file__).parent / "templates"


def new_task(root: Path, template: str, name: str, **changes) -> tasks.Task:
    """A team's task from one of `tandem init`'s templates, with `changes` to its task.yaml's top-level
    sections (a dict merges into the section). Its users come from the synthetic stand-in."""
    folder = root / name
    folder.mkdir(parents=True)
    definition = yaml.safe_load((TEMPLATES / template / "task.yaml").read_text().replace("__NAME__", name))
    for section, value in changes.items():
        definition[section] = {**definition[section], **value} if isinstance(value, dict) else value
    (folder / "task.yaml").write_text(yaml.safe_dump(definition))
    return tasks.read(folder)
