"""Sub-commands loaded only when named: `tandem --help` lists them from the one-line help below and
never imports their modules (which load torch, Prefect, MLflow or GX)."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

# name -> (module:attribute, its one-line help). The attribute is a Typer app (a group) or a command function.
LAZY = {
    "reference": ("tandem.cli.reference:app", "The reference set: the team's test-device recordings the gates score."),
    "device": ("tandem.cli.device:app", "Device runtime: predict, personalize and check updatable Core ML models."),
    "stack": ("tandem.cli.stack:app", "A local production-like stack: S3 (moto), MLflow server, Prefect server + worker."),
    "evaluate": ("tandem.cli.evaluate:evaluate_command", "The method comparison over folds x seeds (or --simulate)."),
    "expectations": ("tandem.cli.expectations:expectations_command", "Write (or --check) the task's GX suites."),
    "audit": ("tandem.cli.audit:audit_command", "Per sharing form: epsilon, utility and measured privacy attacks."),
    "tune": ("tandem.cli.tune:tune_command", "Choose the server model's hyperparameters on the sharing users."),
    "gateway": ("tandem.cli.gateway:gateway_command", "The device gateway: phones enroll and upload in wire format v1."),
}


def load(name: str, target: str):
    """The real click command behind a lazy name."""
    module, _, attribute = target.partition(":")
    obj = getattr(importlib.import_module(module), attribute)
    if not isinstance(obj, typer.Typer):
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        obj = single
    command = typer.main.get_command(obj)
    command.name = name
    return command


class LazyCommand(TyperGroup):
    """Stands in for a command in the listing; parsing its arguments loads the real one."""

    def __init__(self, name: str, target: str, help: str):
        super().__init__(name=name, help=help, short_help=help)
        self.target = target

    def make_context(self, info_name: str | None, args: list[str], parent=None, **extra: Any):
        return load(self.name, self.target).make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):  # never reached: the context made above belongs to the real command
        return ctx.command.invoke(ctx)


class LazyGroup(TyperGroup):
    """The top-level `tandem` group: its own commands plus the lazy ones, in LAZY's order."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name, (target, help) in LAZY.items():
            self.add_command(LazyCommand(name, target, help))
