"""`tandem tasks` (the built-in tasks, the active one marked) and `tandem init DIR` (a new task folder:
a commented task.yaml from a template and a small seeded data file a model can learn)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem import task as tasks
from tandem.contract import feature_ops

console = Console()
TEMPLATES = resources.files("tandem.task") / "templates"
NAME = re.compile(r"^[a-z][a-z0-9-]*$")  # Task.name's pattern
SEED = 7  # the example data is the same on every machine


def _row(task: tasks.Task, active: tasks.Task | None) -> dict:
    return {"name": task.name, "kind": task.kind, "version": task.version, "inputs": task.inputs.kind,
            "data": task.data.name, "description": task.description, "folder": str(task.folder),
            "active": active is not None and task.folder == active.folder}


def tasks_command(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """List the built-in tasks (and a task folder named by TANDEM_TASK); * marks the one this process serves."""
    try:
        active = tasks.active()
    except tasks.TaskError:  # TANDEM_TASK names a folder not made yet: list the built-ins, none active
        active = None
    listed = tasks.builtin()
    if active is not None and all(t.folder != active.folder for t in listed):  # TANDEM_TASK names a folder of the team's own
        listed.append(active)
    rows = [_row(t, active) for t in listed]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="tasks (TANDEM_TASK picks one: a name or a task folder)")
    for col in ("", "name", "kind", "version", "inputs", "data set"):
        table.add_column(col)
    for r in rows:
        table.add_row("*" if r["active"] else "", r["name"], r["kind"], str(r["version"]), r["inputs"], r["data"])
    console.print(table)


def templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if (p / "task.yaml").is_file())


def task_name(folder: Path) -> str:
    """A valid task name from a folder's name: lowercased, anything else -> '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    return name if NAME.match(name) else f"task-{name}".rstrip("-")


def init_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="the task folder to create"),
    template: str = typer.Option("sensor-classification", help="one of: " + ", ".join(templates())),
    name: Optional[str] = typer.Option(None, help="the task's name (default: the folder's name)"),
    force: bool = typer.Option(False, help="write into DIR even when it is not empty (task.yaml and data.csv "
                               "are overwritten)"),
):
    """Make a task folder: a task.yaml with every field commented and an example data.csv to try it on."""
    if template not in templates():
        raise typer.BadParameter(f"unknown template {template!r}: use one of {', '.join(templates())}",
                                 param_hint="--template")
    name = name or task_name(directory)
    if not NAME.match(name):
        raise typer.BadParameter(f"{name!r} is not a task name (a-z first, then a-z, 0-9, '-')", param_hint="--name")
    if directory.exists() and not directory.is_dir():
        raise typer.BadParameter(f"{directory} is a file", param_hint="DIR")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise typer.BadParameter(f"{directory} is not empty: pick a new folder or pass --force", param_hint="DIR")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "task.yaml").write_text((TEMPLATES / template / "task.yaml").read_text().replace("__NAME__", name))
    task = tasks.read(directory)
    data = GENERATORS[template](task, np.random.default_rng(SEED))
    data.to_csv(directory / task.data.source.path, index=False)
    # a template must give a pipeline the library accepts: fail here, not at the first `tandem share`
    inputs = task.inputs.channels if task.inputs.kind == "sensor" else task.inputs.columns
    feature_ops.check(task.featurization, tuple(c.name for c in inputs))

    where = directory.resolve()
    users = data[task.data.source.user].nunique()
    console.print(f"wrote {escape(str(where))}/task.yaml (task [bold]{task.name}[/], {task.kind}, {task.inputs.kind} "
                  f"inputs) and {task.data.source.path} ({len(data)} rows, {users} users)",
                  soft_wrap=True)
    console.print("next steps:\n"
                  "  1. edit task.yaml (docs/bring-your-own-task.md) and put your own data in place of data.csv\n"
                  f"  2. export TANDEM_TASK={escape(str(where))}\n"
                  "  3. tandem share --source task   # the devices share (needs TANDEM_PSEUDONYM_KEY)\n"
                  "  4. tandem run                   # ingest, train, gate, publish (needs TANDEM_SIGNING_KEY: "
                  "tandem keys create --out-dir KEYS)\n"
                  "  5. tandem pull --channel staging --out build/model --public-key KEYS/release-public-key.txt",
                  soft_wrap=True, highlight=False)


# ---- example data: each target a fixed function of the inputs plus a per-user offset, which the
# server model cannot know and the on-device update learns. Ten users: every fifth never shares and
# the server holds out about a fifth of the rest by a keyed hash, so fewer can leave one user to train on.

def _motions(task: tasks.Task, rng: np.random.Generator, users: int = 10, sessions: int = 2,
             samples: int = 200) -> pd.DataFrame:
    """A phone's accelerometer: per label, gravity plus an oscillation (none, slow and small, fast and
    large); each user holds the phone their own way (gravity's direction) and moves with their own vigor."""
    rate, source = task.inputs.sample_rate_hz, task.data.source
    channels = [c.name for c in task.inputs.channels]
    profiles = [(0.0, 0.0), (0.8, 0.3), (4.0, 1.0)]  # (Hz, g) per label, in the labels' order
    frames = []
    for u in range(users):
        down = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, 3)
        down /= np.linalg.norm(down)
        vigor, tempo = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.2)
        for s in range(sessions):
            start = pd.Timestamp("2024-05-01T08:00:00Z") + pd.Timedelta(days=u, hours=6 * s)
            offset = 0
            for c in rng.permutation(len(task.target.labels)):  # one run per label, in a random order
                hz, g = profiles[c]
                t = (offset + np.arange(samples)) / rate
                axis = rng.normal(0, 1, 3)
                wave = g * vigor * np.sin(2 * np.pi * hz * tempo * t + rng.uniform(0, 2 * np.pi))
                x = down + wave[:, None] * (axis / np.linalg.norm(axis)) + rng.normal(0, 0.02 + 0.05 * g, (samples, 3))
                frame = pd.DataFrame(x.round(4), columns=channels)
                frame.insert(0, source.target, task.target.labels[c])
                stamps = (start + pd.to_timedelta(t, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f")
                frame.insert(0, source.time, stamps.str[:-3] + "Z")  # milliseconds, UTC
                frame.insert(0, source.session, f"s{s + 1}")
                frame.insert(0, source.user, f"u{u + 1:02d}")
                frames.append(frame)
                offset += samples
    return pd.concat(frames, ignore_index=True)


def _workouts(task: tasks.Task, rng: np.random.Generator, spread: float, noise: float, users: int = 10,
              rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Workouts (duration, distance, climb) and how hard each felt: a fixed function of them plus how
    this user rates (a personal offset within +-spread: none so far out that the server's model
    fails them before any update) plus noise."""
    frames, scores, source = [], [], task.data.source
    offsets = rng.permutation(np.linspace(-spread, spread, users))
    for u in range(users):
        pace = rng.uniform(5, 11)  # km/h: this user's usual speed
        duration = rng.uniform(15, 150, rows)
        distance = duration / 60 * pace * rng.uniform(0.8, 1.2, rows)
        climb = np.minimum(rng.lognormal(4.5, 1.0, rows), 3000)
        days = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.choice(365, rows, replace=False)), unit="D")
        frames.append(pd.DataFrame({source.user: f"u{u + 1:02d}", source.time: days.strftime("%Y-%m-%d"),
                                    "duration_min": duration.round(1), "distance_km": distance.round(2),
                                    "climb_m": climb.round(0)}))
        effort = 0.5 + duration / 60 + distance / 10 + np.log1p(climb) / 4  # the same for everyone
        scores.append(effort + offsets[u] + rng.normal(0, noise, rows))
    return pd.concat(frames, ignore_index=True), np.concatenate(scores)


def _workout_classes(task: tasks.Task, rng: np.random.Generator) -> pd.DataFrame:
    frame, score = _workouts(task, rng, spread=0.3, noise=0.1)
    cuts = np.quantile(score, np.arange(1, len(task.target.labels)) / len(task.target.labels))  # balanced classes
    return frame.assign(**{task.data.source.target: np.asarray(task.target.labels)[np.searchsorted(cuts, score)]})


def _workout_effort(task: tasks.Task, rng: np.random.Generator) -> pd.DataFrame:
    frame, score = _workouts(task, rng, spread=0.5, noise=0.3)
    return frame.assign(**{task.data.source.target: np.clip(score, task.target.min, task.target.max).round(2)})


GENERATORS = {"sensor-classification": _motions, "tabular-classification": _workout_classes,
              "tabular-regression": _workout_effort}


# Before TANDEM_TASK names a task that exists (e.g. `tandem init` of the folder it names), the full
# CLI cannot load; these two commands need no active task (tandem.cli.errors falls back to them).
bootstrap = typer.Typer(add_completion=False, help="Tandem: make and list tasks.")
bootstrap.command("tasks")(tasks_command)
bootstrap.command("init")(init_command)
