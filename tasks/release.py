"""Tracking, gate and publish tasks."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.concurrency.sync import concurrency

from tandem import candidate
from tandem.config import Settings
from tandem.publish import end_run
from tandem.run_report import run_report
from tandem.storage import store_from_settings


@task(name="already-trained")
def already_trained(snapshot_id: str) -> dict | None:
    return candidate.trained_record(store_from_settings(), Settings.from_env().model_name, snapshot_id)


@task(name="start-tracking")
def start_tracking(snapshot, params, summary: dict) -> str:
    return candidate.start_tracking(Settings.from_env(), snapshot, params, summary)


@task(name="fail-tracking")
def fail_tracking(run_id: str) -> None:
    end_run(Settings.from_env(), run_id, "FAILED")


def _publish_lock(model_name: str) -> str:
    """A global concurrency limit of one per model: two runs never publish or move a channel at once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = f"tandem-publish-{model_name}"
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass
    return name


@task(name="gate-and-publish")
def publish_candidate(snapshot, result, metrics: dict, mlmodel: bytes, params, run_id: str) -> dict:
    settings = Settings.from_env()
    with concurrency(_publish_lock(settings.model_name), strict=True, timeout_seconds=3600):
        return candidate.gate_and_publish(settings, store_from_settings(settings), snapshot, result, metrics,
                                          mlmodel, params, run_id)


@task(name="report")
def report_run(outcome: dict) -> None:
    """What a person reads in the Prefect UI: the markdown report and a link to the MLflow run."""
    create_markdown_artifact(run_report(outcome), key="train-and-release-report",
                             description="batches, metrics against production, the release and its files")
    if outcome.get("mlflow_url"):
        create_link_artifact(outcome["mlflow_url"], link_text="MLflow run", key="mlflow-run")


@task(name="record-trained")
def record_trained(snapshot_id: str, outcome: dict) -> None:
    candidate.record_trained(store_from_settings(), Settings.from_env().model_name, snapshot_id, outcome)
