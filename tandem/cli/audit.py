"""`tandem audit`: per sharing form, the stated guarantee against measured attacks and utility."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tandem import task as tasks
from tandem.cli.evaluate import read_params, require
from tandem.evaluation.audit_report import run_and_record, table
from tandem.evaluation.privacy_audit import AuditParams
from tandem.settings import Settings

console = Console()


def audit_command(
    quick: bool = typer.Option(False, help="synthetic fleet, three forms: minutes, for smoke tests"),
    params_file: Path | None = typer.Option(None, exists=True, help="JSON with the audit parameters (AuditParams)"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the run to MLflow"),
):
    """Measure every sharing form: per-user epsilon, utility, re-identification, attribute and
    membership inference. Writes TANDEM_HOME/reports/audit.{json,md}; logs an MLflow run."""
    settings = Settings()
    task = tasks.resolve(settings.task)  # resolved once, passed down
    require(task, "audit", "tandem audit")
    params = (read_params(AuditParams, params_file) if params_file
              else AuditParams.quick() if quick else AuditParams())
    out = run_and_record(settings, task, params, "tandem audit --quick" if quick else "tandem audit", not no_mlflow,
                         log=console.print)
    console.print(table(out["result"]))
    console.print(f"report: {out['md']}" + (f"\nMLflow run: {out['mlflow_run_id']}" if out["mlflow_run_id"] else ""))
