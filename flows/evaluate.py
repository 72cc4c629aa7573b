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


@task(name="privacy-audit")
def privacy_audit_task(params: EvaluationParams, track: bool) -> dict:
    """`tandem audit` on the evaluation's fleet and protocol (synthetic runs get the quick audit)."""
    from tandem.audit_cli import run_and_record
    from tandem.config import Settings
    from tandem.privacy_audit import AuditParams

    audit = (AuditParams.quick() if params.source == "synthetic" else
             AuditParams(holdout_every=params.holdout_every, fraction=params.fraction, train=params.train,
                         per_user_budget=params.per_user_budget, seed=params.seed))
    out = run_and_record(Settings.from_env(), audit, "tandem audit", track, log=get_run_logger().info)
    return {"report": out["md"], "json": out["json"], "mlflow_run_id": out["mlflow_run_id"]}


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
def evaluate(params: EvaluationParams = EvaluationParams(), track: bool = True, audit: bool = True) -> dict:
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
    privacy = privacy_audit_task(params, track) if audit else None
    if privacy and run_id and privacy["mlflow_run_id"]:
        from tandem import tracking

        tracking.client(settings).set_tag(run_id, "tandem.privacy_audit_run", privacy["mlflow_run_id"])
    return {"report": files["evaluation.md"], "json": files["evaluation.json"], "mlflow_run_id": run_id,
            "claims": result["claims"], "methods": {n: m["mean"] for n, m in result["methods"].items()},
            "privacy_audit": privacy}
