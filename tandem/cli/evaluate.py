"""`tandem evaluate`: the evaluation flow from the command line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tandem import task as tasks
from tandem.cli import launch
from tandem.evaluation import regression_eval
from tandem.evaluation.experiment import EvaluationParams, run_evaluation
from tandem.evaluation.report import write_report
from tandem.evaluation.robust_eval import evaluate, log_to_mlflow, write
from tandem.evaluation.tracking import log_evaluation
from tandem.release.params import unknown_keys
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task import Task, TaskError
from tandem.task.kinds import kind_of

console = Console()


def require(task: Task, evaluation: str, command: str) -> None:
    """The rounds simulation and the audit compare classifiers (accuracy, FedAvg baselines, label
    attacks): the task's kind says which evaluations it supports (`kinds.evaluations`); every kind has
    the folds x seeds protocol (`tandem evaluate`)."""
    kind = kind_of(task)
    if evaluation not in kind.evaluations:
        raise TaskError(f"`{command}` compares classifiers; task {task.name} is a {kind.name} "
                        "(`tandem evaluate --folds F --seeds S` gives its MAE/RMSE, generic and personalized)")


def read_params(model, path: Path, hint: str = "--params-file"):
    """A params file validated against `model`; unknown keys are refused in one line (a guessed name
    would otherwise be silently ignored)."""
    try:
        given = json.loads(path.read_text())
    except ValueError as e:
        raise typer.BadParameter(f"{path} is not JSON ({e})", param_hint=hint)
    if not isinstance(given, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object of {model.__name__} fields", param_hint=hint)
    unknown = unknown_keys(model, given)
    if unknown:
        raise typer.BadParameter(f"{path}: unknown key(s) {', '.join(unknown)} (not a {model.__name__} field; "
                                 f"see docs/evaluation.md)", param_hint=hint)
    try:
        return model.model_validate(given)
    except ValueError as e:
        raise typer.BadParameter(f"{path}: {str(e).splitlines()[0]}", param_hint=hint)


def refuse_protocol_options(ctx: typer.Context) -> None:
    """--folds, --seeds and --workers shape the folds x seeds protocol; the rounds simulation has no folds,
    so one of them given with it would be silently dropped (a long run of the wrong thing)."""
    # by name: typer 0.29 carries its own copy of click, whose enum is not click's
    given = [f"--{name}" for name in ("folds", "seeds", "workers")
             if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
    if given:
        raise typer.BadParameter(f"{', '.join(given)}: the folds x seeds protocol's, which the rounds simulation "
                                 f"(--quick, --simulate, --params-file, --rounds) does not run; drop one side")


def evaluate_command(
    ctx: typer.Context,
    quick: bool = typer.Option(False, help="synthetic fleet, few rounds and curve points: seconds, for smoke tests"),
    params_file: Optional[Path] = typer.Option(None, exists=True, help="JSON with the evaluation parameters (EvaluationParams)"),
    rounds: Optional[int] = typer.Option(None, min=1, help="override the number of rounds"),
    no_flow: bool = typer.Option(False, "--no-flow", help="run the library directly, without Prefect"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the run to MLflow"),
    folds: int = typer.Option(3, min=2, help="leave-group-out folds: every user never shares in one of them"),
    seeds: int = typer.Option(1, min=1, help="seeds per fold (model init, split, shuffling, FL)"),
    simulate: bool = typer.Option(False, "--simulate", help="the rounds simulation and privacy curves instead (tandem.evaluation.experiment)"),
    no_audit: bool = typer.Option(False, "--no-audit", help="skip the flow's last step, the privacy audit (tandem audit)"),
    workers: Optional[int] = typer.Option(None, min=1, help="processes for the folds x seeds runs (default: one per core)"),
):
    """Simulate the fleet over rounds and compare generic / personalized / local-only / FedAvg / central
    on the users who never share. Writes TANDEM_HOME/reports/evaluation.{json,md} and plots; logs to MLflow.
    A regression task: generic / personalized / own mean / local only, MAE and RMSE over folds x seeds."""
    settings = Settings()
    task = tasks.resolve(settings.task)  # resolved once, passed down
    simulation = quick or simulate or params_file or rounds
    if simulation:
        refuse_protocol_options(ctx)
    else:
        protocol = PROTOCOLS[kind_of(task).name]
        return protocol(settings, task, folds, seeds, no_flow, no_mlflow, no_audit, workers)
    require(task, "simulation", "tandem evaluate --simulate")
    if params_file:
        params = read_params(EvaluationParams, params_file)
    else:
        params = EvaluationParams.quick() if quick else EvaluationParams()
    if rounds is not None:
        params.rounds = rounds
    if no_flow:
        with tempfile.TemporaryDirectory(prefix="tandem-evaluate-") as work:
            result = run_evaluation(task, params, home=work, log=console.print)
        files = {k: str(v) for k, v in write_report(result, settings.home / "reports",
                                                     "tandem evaluate --quick" if quick else "tandem evaluate").items()}
        run_id = None if no_mlflow else log_evaluation(Tracker(settings), result, files)
        out = {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
               "claims": result["claims"], "methods": {n: m["mean"] for n, m in result["methods"].items()}}
    else:
        evaluate = launch.flow("flows.evaluate:evaluate", settings)
        out = launch.run_flow(evaluate, params, track=not no_mlflow, audit=not no_audit)
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
    _print_audit(out)


def _print_audit(out: dict) -> None:
    if out.get("privacy_audit"):
        console.print(f"privacy audit: {out['privacy_audit']['report']}")


def _regression(settings, task: Task, folds: int, seeds: int, no_flow: bool, no_mlflow: bool, no_audit: bool,
                workers: int | None) -> None:
    """A regression task's folds x seeds protocol (tandem.evaluation.regression_eval; no audit: its
    attacks work on classes)."""
    if no_flow:
        result = regression_eval.evaluate(task, folds, seeds, log=console.print, workers=workers)
        files = regression_eval.write(result, settings.home / "reports", f"tandem evaluate --folds {folds} --seeds {seeds}")
        out = {"report": str(files["evaluation.md"]), "json": str(files["evaluation.json"]), "claims": result["claims"],
               "mlflow_run_id": None if no_mlflow else regression_eval.log_to_mlflow(settings, result, files)}
    else:
        out = launch.run_flow(launch.flow("flows.evaluate:evaluate_regression", settings), folds, seeds, track=not no_mlflow,
                              workers=workers)
    c = out["claims"]
    table = Table(title=f"never-sharing users' later rows: {c['target']} ({c['folds']} folds x {c['seeds']} seeds, {c['users']} users)")
    for column in ("method", "MAE", "RMSE"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for m in regression_eval.METHODS:
        table.add_row(regression_eval.LABELS[m], f"{c[m + '_mae_mean']:.4f}", f"{c[m + '_rmse_mean']:.4f}")
    console.print(table)
    low, high = c["personalization_mae_change_ci95"]
    console.print(f"personalized ({c['labelled_per_user']} labelled rows): MAE {c['personalization_mae_change']:+.4f} "
                  f"(95 % CI [{low:+.4f}, {high:+.4f}]), raises the error of {100 * c['personalization_harmed_share']:.0f} % of users")
    console.print(f"report: {out['report']}\njson:   {out['json']}"
                  + (f"\nMLflow run: {out['mlflow_run_id']}" if out["mlflow_run_id"] else ""))


def _protocol(settings, task: Task, folds: int, seeds: int, no_flow: bool, no_mlflow: bool, no_audit: bool,
              workers: int | None) -> None:
    """The folds x seeds protocol (tandem.evaluation.robust_eval), through its Prefect flow unless --no-flow."""
    if no_flow:
        result = evaluate(task, folds, seeds, log=console.print, reports_dir=settings.home / "reports", workers=workers)
        files = write(result, settings.home / "reports", f"tandem evaluate --folds {folds} --seeds {seeds}")
        out = {"report": str(files["evaluation.md"]), "json": str(files["evaluation.json"]), "claims": result["claims"],
               "mlflow_run_id": None if no_mlflow else log_to_mlflow(settings, result, files),
               "seconds": result["seconds_total"]}
    else:
        evaluate_protocol = launch.flow("flows.evaluate:evaluate_protocol", settings)
        out = launch.run_flow(evaluate_protocol, folds, seeds, track=not no_mlflow, audit=not no_audit, workers=workers)
    c = out["claims"]
    console.print(f"generic {100 * c['generic_mean']:.1f} % ± {100 * c['generic_sd_over_seeds']:.2f} over seeds "
                  f"({c['folds']} folds x {c['seeds']} seeds, {c['users']} users)")
    for b, v in c["personalization"].items():
        console.print(f"personalized {b}: {100 * v['personalized_mean']:.1f} % ({v['gain_points']:+.2f} points, "
                      f"{100 * v['harmed_share']:.0f} % of users harmed; local only {100 * v['local_only_mean']:.1f} %)")
    console.print(f"best FL rival {c['best_fl_baseline']}: {100 * c['best_fl_personalized_u20_mean']:.1f} % personalized (20/user) "
                  f"vs Tandem {100 * c['tandem_personalized_u20_mean']:.1f} %")
    console.print("targets: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in c["targets"].items()))
    console.print(f"report: {out['report']}\njson:   {out['json']}  ({out['seconds']:.0f} s)"
                  + (f"\nMLflow run: {out['mlflow_run_id']}" if out["mlflow_run_id"] else ""))
    _print_audit(out)


# `tandem evaluate` (no --simulate) per task kind: the harness's report for its metrics
PROTOCOLS = {"classification": _protocol, "regression": _regression}
