"""The evaluation: simulate the fleet over rounds and compare generic, personalized, local-only,
federated-averaging and central models on users who never share. Results go to
``TANDEM_HOME/reports/`` (evaluation.json, evaluation.md, plots) and to MLflow (experiment
``tandem/evaluation``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task

from tandem import task as tasks
from tandem.evaluation import regression_eval, robust_eval
from tandem.evaluation.experiment import EvaluationParams, run_evaluation
from tandem.evaluation.privacy_audit import AuditParams
from tandem.evaluation.report import write_report
from tandem.evaluation.tracking import log_evaluation
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task import Task
from tasks.audit import privacy_audit


@task(name="run-evaluation")
def run_evaluation_task(task: Task, params: EvaluationParams, home: str) -> dict:
    return run_evaluation(task, params, home=home, log=get_run_logger().info)


@task(name="write-report")
def write_report_task(result: dict, out_dir: str, command: str) -> dict:
    return {name: str(path) for name, path in write_report(result, out_dir, command).items()}


@task(name="log-to-mlflow")
def log_to_mlflow_task(settings: Settings, result: dict, files: dict) -> str:
    return log_evaluation(Tracker(settings), result, files)


@flow(name="evaluate", log_prints=True)
def evaluate(params: EvaluationParams = EvaluationParams(), track: bool = True, audit: bool = True) -> dict:
    """Simulate the rounds (share, ingest, validate, retrain, personalize, back up, upgrade) and compare
    the methods side by side; write the report under TANDEM_HOME/reports and log it to MLflow; then
    the privacy audit (`tandem audit`) on the same fleet."""
    settings = Settings()
    out_dir = settings.home / "reports"
    with tempfile.TemporaryDirectory(prefix="tandem-evaluate-") as work:
        result = run_evaluation_task(tasks.resolve(settings.task), params, work)
    command = "tandem evaluate --quick" if params.source == "synthetic" else "tandem evaluate"
    files = write_report_task(result, str(out_dir), command)
    run_id = log_to_mlflow_task(settings, result, files) if track else None
    privacy = (privacy_audit(settings, AuditParams.for_evaluation(params),
                             "tandem audit --quick" if params.source == "synthetic" else "tandem audit", track,
                             link_run=run_id) if audit else None)
    return {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
            "claims": result["claims"], "methods": {n: m["mean"] for n, m in result["methods"].items()},
            "privacy_audit": privacy}


@task(name="run-protocol")
def run_protocol_task(task: Task, folds: int, seeds: int, reports_dir: str, workers: int | None = None) -> dict:
    return robust_eval.evaluate(task, folds, seeds, log=get_run_logger().info, reports_dir=Path(reports_dir),
                                workers=workers)


@task(name="write-protocol-report")
def write_protocol_report_task(result: dict, out_dir: str, command: str) -> dict:
    return {name: str(path) for name, path in robust_eval.write(result, out_dir, command).items()}


@task(name="log-protocol-to-mlflow")
def log_protocol_task(settings: Settings, result: dict, files: dict) -> str:
    return robust_eval.log_to_mlflow(settings, result, files)


@flow(name="evaluate-protocol", log_prints=True)
def evaluate_protocol(folds: int = 3, seeds: int = 1, track: bool = True, audit: bool = True,
                      workers: int | None = None) -> dict:
    """Leave-group-out folds x seeds: generic, personalized by budget, local only, FedAvg / FedProx /
    FedPer; report under TANDEM_HOME/reports, one MLflow run with the table and plots; then the
    privacy audit (`tandem audit`, its default parameters). `workers`: processes for the (fold, seed)
    runs (empty: one per core)."""
    settings = Settings()
    result = run_protocol_task(tasks.resolve(settings.task), folds, seeds, str(settings.home / "reports"), workers)
    files = write_protocol_report_task(result, str(settings.home / "reports"),
                                       f"tandem evaluate --folds {folds} --seeds {seeds}")
    run_id = log_protocol_task(settings, result, files) if track else None
    privacy = privacy_audit(settings, AuditParams(), "tandem audit", track, link_run=run_id) if audit else None
    return {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
            "claims": result["claims"], "seconds": result["seconds_total"], "privacy_audit": privacy}


@task(name="run-regression-protocol")
def run_regression_task(task: Task, folds: int, seeds: int, workers: int | None = None) -> dict:
    return regression_eval.evaluate(task, folds, seeds, log=get_run_logger().info, workers=workers)


@task(name="write-regression-report")
def write_regression_report_task(result: dict, out_dir: str, command: str) -> dict:
    return {name: str(path) for name, path in regression_eval.write(result, out_dir, command).items()}


@task(name="log-regression-to-mlflow")
def log_regression_task(settings: Settings, result: dict, files: dict) -> str:
    return regression_eval.log_to_mlflow(settings, result, files)


@flow(name="evaluate-regression", log_prints=True)
def evaluate_regression(folds: int = 3, seeds: int = 1, track: bool = True, workers: int | None = None) -> dict:
    """A regression task's folds x seeds: generic, personalized on the device, own mean, local only
    (MAE, RMSE); report under TANDEM_HOME/reports, one MLflow run with the table and plot. `workers`:
    processes for the (fold, seed) runs (empty: one per core)."""
    settings = Settings()
    result = run_regression_task(tasks.resolve(settings.task), folds, seeds, workers)
    files = write_regression_report_task(result, str(settings.home / "reports"),
                                         f"tandem evaluate --folds {folds} --seeds {seeds}")
    run_id = log_regression_task(settings, result, files) if track else None
    return {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
            "claims": result["claims"], "seconds": result["seconds_total"]}
