"""The evaluation: simulate the fleet over rounds and compare generic, personalized, local-only,
federated-averaging and central models on users who never share. Results go to
``TANDEM_HOME/reports/`` (evaluation.json, evaluation.md, plots) and to MLflow (experiment
``tandem/evaluation``)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tandem.comparison import EvaluationParams


@task(name="run-evaluation")
def run_evaluation_task(params: EvaluationParams, home: str) -> dict:
    from tandem.comparison import run_evaluation

    log = get_run_logger()
    return run_evaluation(params, home=home, log=log.info)


@task(name="write-report")
def write_report_task(result: dict, out_dir: str, command: str) -> dict:
    from tandem.report import write_report

    return {name: str(path) for name, path in write_report(result, out_dir, command).items()}


def log_to_mlflow(settings, result: dict, files: dict) -> str:
    """One run in the `tandem/evaluation` experiment: params, per-round and per-method metrics, the report."""
    from pathlib import Path

    from tandem import publish, tracking

    c = tracking.client(settings)
    run = c.create_run(tracking.experiment_id(settings, name="tandem/evaluation"),
                       run_name=f"evaluate-{result['params']['source']}",
                       tags={"tandem.kind": "evaluation", "code_version": publish.code_version()})
    run_id = run.info.run_id
    for key, value in publish._flatten({k: v for k, v in result["params"].items() if not isinstance(v, list)}).items():
        c.log_param(run_id, key, value)
    for r in result["rounds"]:
        publish.log_metrics(settings, run_id, {
            "round.generic": r["generic"]["mean"], "round.personalized": r["personalized"]["mean"],
            "round.helped": r["personalization_helped"], "round.harmed": r["personalization_harmed"],
            "round.sharing_users": r["sharing_users"], "round.snapshot_rows": r["snapshot_rows"],
            **({"round.fedavg": r["fedavg"]["generic"]["mean"]} if "fedavg" in r else {})}, step=r["round"])
    publish.log_metrics(settings, run_id, {f"method.{n}": m["mean"] for n, m in result["methods"].items()})
    publish.log_metrics(settings, run_id, {f"claim.{k}": float(v) for k, v in result["claims"].items()})
    publish.log_files(settings, run_id, {Path(p).name: Path(p).read_bytes() for p in files.values()}, "report")
    publish.end_run(settings, run_id)
    return run_id


@flow(name="evaluate", log_prints=True)
def evaluate(params: EvaluationParams = EvaluationParams(), track: bool = True) -> dict:
    """Simulate the rounds (share, ingest, validate, retrain, personalize, back up, upgrade) and compare
    the methods side by side; write the report under TANDEM_HOME/reports and log it to MLflow."""
    import tempfile

    from tandem.config import Settings

    settings = Settings.from_env()
    out_dir = settings.home / "reports"
    with tempfile.TemporaryDirectory(prefix="tandem-evaluate-") as work:
        result = run_evaluation_task(params, work)
    command = "tandem evaluate --quick" if params.source == "synthetic" else "tandem evaluate"
    files = write_report_task(result, str(out_dir), command)
    run_id = log_to_mlflow(settings, result, files) if track else None
    return {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
            "claims": result["claims"], "methods": {n: m["mean"] for n, m in result["methods"].items()}}


@task(name="run-protocol")
def run_protocol_task(folds: int, seeds: int) -> dict:
    from tandem.robust_eval import evaluate as run

    log = get_run_logger()
    return run(folds, seeds, log=log.info)


@flow(name="evaluate-protocol", log_prints=True)
def evaluate_protocol(folds: int = 3, seeds: int = 1, track: bool = True) -> dict:
    """Leave-group-out folds x seeds: generic, personalized by budget, local only, FedAvg / FedProx /
    FedPer; report under TANDEM_HOME/reports, one MLflow run with the table and plots."""
    from tandem.config import Settings
    from tandem.robust_eval import log_to_mlflow as log_protocol
    from tandem.robust_eval import write

    settings = Settings.from_env()
    result = run_protocol_task(folds, seeds)
    files = write(result, settings.home / "reports", f"tandem evaluate --folds {folds} --seeds {seeds}")
    run_id = log_protocol(settings, result, files) if track else None
    return {"report": str(files["evaluation.md"]), "json": str(files["evaluation.json"]), "mlflow_run_id": run_id,
            "claims": result["claims"], "seconds": result["seconds_total"]}
