"""Tracking, gate and publish tasks."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tandem import pipeline


@task(name="start-tracking")
def start_tracking(ctx: pipeline.Context, snapshot, params, summary: dict) -> str:
    return pipeline.start_tracking(ctx, snapshot, params, summary)


@task(name="fail-tracking")
def fail_tracking(ctx: pipeline.Context, run_id: str) -> None:
    pipeline.fail_tracking(ctx, run_id)


def _publish_lock(model_name: str) -> str:
    """A global concurrency limit of one per model: two runs never publish or move a channel at once."""
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
def publish_candidate(ctx: pipeline.Context, snapshot, result, metrics: dict, mlmodel: bytes, params, run_id: str) -> dict:
    with concurrency(_publish_lock(ctx.settings.model_name), strict=True, timeout_seconds=3600):
        return pipeline.gate_and_publish(ctx, snapshot, result, metrics, mlmodel, params, run_id)


@task(name="report")
def report_run(outcome: dict) -> None:
    """What a person reads in the Prefect UI: the markdown report and a link to the MLflow run."""
    create_markdown_artifact(pipeline.report(outcome), key="train-and-release-report",
                             description="batches, metrics against production, the release and its files")
    if outcome.get("mlflow_url"):
        create_link_artifact(outcome["mlflow_url"], link_text="MLflow run", key="mlflow-run")


@task(name="record-trained")
def record_trained(ctx: pipeline.Context, snapshot_id: str, outcome: dict) -> None:
    pipeline.record_trained(ctx, snapshot_id, outcome)
