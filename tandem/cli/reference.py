"""`tandem reference add FILE | show`: the team's reference set in the store (`tandem.data.reference`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tandem import task as tasks
from tandem.data import reference
from tandem.data.store import store_from_settings
from tandem.settings import Settings

app = typer.Typer(help="The reference set: the team's test-device recordings the release gates score and "
                       "the golden vectors come from.", no_args_is_help=True, add_completion=False)
console = Console()


def _describe(manifest: dict) -> str:
    """One line: a classifier's windows per label, or a regressor's target range."""
    if "label_counts" in manifest:
        targets = ", ".join(f"{k} {v}" for k, v in manifest["label_counts"].items())
    elif "target_range" in manifest:
        low, high = manifest["target_range"]
        targets = f"targets {low:g} to {high:g}"
    else:
        targets = "no target summary"
    return (f"reference set v{manifest['version']} of {manifest['model']}: {manifest['rows']} windows from "
            f"{manifest['devices']} test devices ({targets}); sha256 {manifest['sha256'][:12]}…, added {manifest['added_at']}")


@app.command()
def add(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                    help="a recordings .npz: windows, labels, devices, window_keys, captured_at "
                                         "(see docs/reference-set.md)")):
    """Register recordings as the next version of the reference set (the same file again adds nothing)."""
    settings = Settings()
    before = reference.latest_manifest(store_from_settings(settings), settings.model_name)
    manifest = reference.add(store_from_settings(settings), settings.model_name, file.read_bytes(), tasks.resolve(settings.task),
                             source=file.name)
    new = before is None or before["version"] != manifest["version"]
    console.print(("registered " if new else "already registered: ") + _describe(manifest))


@app.command()
def show():
    """The reference set in use."""
    settings = Settings()
    manifest = reference.latest_manifest(store_from_settings(settings), settings.model_name)
    if manifest is None:
        raise reference.ReferenceError(f"no reference set for {settings.model_name}: `tandem reference add FILE` registers one")
    console.print(_describe(manifest))
