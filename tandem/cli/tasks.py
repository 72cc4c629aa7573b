"""`tandem tasks` (the built-in tasks, the active one marked) and `tandem init DIR` (a new task folder:
a commented task.yaml from a template and a small seeded data file a model can learn)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem import task as tasks
from tandem.contract import feature_ops
from tandem.settings import Settings

console = Console()
TEMPLATES = resources.files("tandem.task") / "templates"
NAME = re.compile(r"^[a-z][a-z0-9-]*$")  # Task.name's pattern
SEED = 7  # the example data is the same on every machine


def _row(task: tasks.Task, active: tasks.Task | None) -> dict:
    return {"name": task.name, "kind": task.kind, "version": task.version, "inputs": task.inputs.kind,
            "data": task.data.name, "description": task.description, "folder": str(task.folder),
            "active": active is not None and task.folder == active.folder}


def tasks_command(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """List the built-in tasks (and a task folder named by TANDEM_TASK); * marks the one this process serves.
    A task folder that does not load is listed with its error, and the exit is non-zero."""
    named = Settings().task  # TANDEM_TASK, or the default
    invalid = None
    try:
        active = tasks.resolve(named)
    except tasks.TaskError as e:
        active = None
        if named and Path(named).expanduser().is_dir():  # a folder that exists but does not load: say why
            invalid = {"name": Path(named).name, "kind": "invalid", "version": "", "inputs": "", "data": "",
                       "description": "", "folder": str(Path(named).expanduser().resolve()), "active": False,
                       "error": str(e).splitlines()[0]}
        # else TANDEM_TASK names a folder not made yet (`tandem init` makes it): the built-ins, none active
    listed = tasks.builtin()
    if active is not None and all(t.folder != active.folder for t in listed):  # TANDEM_TASK names a folder of the team's own
        listed.append(active)
    rows = [_row(t, active) for t in listed] + ([invalid] if invalid else [])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="tasks (TANDEM_TASK picks one: a name or a task folder)")
        for col in ("", "name", "kind", "version", "inputs", "data set"):
            table.add_column(col)
        for r in rows:
            table.add_row("*" if r["active"] else "", r["name"], r["kind"], str(r["version"]), r["inputs"],
                          escape(r.get("error", r["data"])))
        console.print(table)
    if invalid:
        console.print(f"[red]error:[/] TANDEM_TASK={escape(named)} does not load: {escape(invalid['error'])}; "
                      "fix its task.yaml (docs/bring-your-own-task.md)", soft_wrap=True)
        raise typer.Exit(1)


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
    from tandem.cli.example_data import example  # numpy and pandas: `tandem tasks` starts without them

    task = tasks.read(directory)
    data = example(template, task, SEED)
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


# Before TANDEM_TASK names a task that exists (e.g. `tandem init` of the folder it names), the full
# CLI cannot load; these two commands need no active task (tandem.cli.errors falls back to them).
bootstrap = typer.Typer(add_completion=False, help="Tandem: make and list tasks.")
bootstrap.command("tasks")(tasks_command)
bootstrap.command("init")(init_command)
