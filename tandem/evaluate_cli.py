"""`tandem evaluate`: the evaluation flow from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def evaluate_command(
    quick: bool = typer.Option(False, help="synthetic fleet, few rounds and curve points: seconds, for smoke tests"),
    params_file: Optional[Path] = typer.Option(None, exists=True, help="JSON with the evaluation parameters (EvaluationParams)"),
    rounds: Optional[int] = typer.Option(None, min=1, help="override the number of rounds"),
    no_flow: bool = typer.Option(False, "--no-flow", help="run the library directly, without Prefect"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the run to MLflow"),
    no_audit: bool = typer.Option(False, "--no-audit", help="skip the privacy audit step (tandem audit)"),
):
    """Simulate the fleet over rounds and compare generic / personalized / local-only / FedAvg / central
    on the users who never share. Writes TANDEM_HOME/reports/evaluation.{json,md} and plots; logs to MLflow."""
    from tandem.comparison import EvaluationParams
    from tandem.config import Settings, prepare_prefect_home

    settings = Settings.from_env()
    if params_file:
        params = EvaluationParams.model_validate(json.loads(params_file.read_text()))
    else:
        params = EvaluationParams.quick() if quick else EvaluationParams()
    if rounds is not None:
        params.rounds = rounds
    if no_flow:
        import tempfile

        from flows.evaluate import log_to_mlflow
        from tandem.comparison import run_evaluation
        from tandem.report import write_report

        with tempfile.TemporaryDirectory(prefix="tandem-evaluate-") as work:
            result = run_evaluation(params, home=work, log=console.print)
        files = {k: str(v) for k, v in write_report(result, settings.home / "reports",
                                                     "tandem evaluate --quick" if quick else "tandem evaluate").items()}
        run_id = None if no_mlflow else log_to_mlflow(settings, result, files)
        out = {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
               "claims": result["claims"], "methods": {n: m["mean"] for n, m in result["methods"].items()}}
    else:
        prepare_prefect_home(settings)
        from flows.evaluate import evaluate

        out = evaluate(params, track=not no_mlflow, audit=not no_audit)
    table = Table(title="evaluation users (never share)")
    table.add_column("method")
    table.add_column("accuracy %", justify="right")
    for name, acc in out["methods"].items():
        table.add_row(name, f"{100 * acc:.1f}")
    console.print(table)
    c = out["claims"]
    console.print(f"personalization ({c['personalization_max_labelled']} labelled windows max): "
                  f"{c['personalization_gain_points']:+.1f} points, harms {100 * c['personalization_harmed_fraction']:.0f} % of users; "
                  f"generic across rounds {100 * c['generic_first_round']:.1f} -> {100 * c['generic_last_round']:.1f}")
    console.print(f"report: {out['report']}\njson:   {out['json']}" + (f"\nMLflow run: {out['mlflow_run_id']}" if out["mlflow_run_id"] else ""))
    if out.get("privacy_audit"):
        console.print(f"privacy audit: {out['privacy_audit']['report']}")
