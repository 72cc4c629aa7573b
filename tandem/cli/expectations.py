"""`tandem expectations`: write the GX suites generated from the batch schema (or check them)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from tandem import task as tasks
from tandem.data.validation.suites import (
    FORM_SUITES,
    build,
    suite_json,
    suite_path,
)
from tandem.settings import Settings

console = Console()


def expectations_command(check: bool = typer.Option(False, "--check", help="only compare; exit 1 if a file is out of date")):
    """Write expectations/shared_batch*.json from the batch schema (the suites kept in git)."""
    settings = Settings()
    task, folder = tasks.resolve(settings.task), settings.expectations_dir
    targets = [(suite_path(task, form, folder), suite_json(build(task, form))) for form in (None, *FORM_SUITES)]
    stale = 0
    for path, text in targets:
        if check:
            same = path.exists() and path.read_text() == text
            console.print(f"{path}: {'up to date' if same else 'differs from the schema: run `tandem expectations`'}")
            stale += not same
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f"wrote {path} ({len(json.loads(text)['expectations'])} expectations)")
    if stale:
        raise typer.Exit(1)
