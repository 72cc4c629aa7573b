"""Tracking, gate and publish tasks."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from tandem import pipeline


@task(name="start-tracking")
def start_tracking(ctx: pipeline.Context, snapshot, params, summary: dict) -> str:
    return pipeline.start_tracking(ctx, snapshot, params, summary)


@task(name="fail-tracking")
def fail_tracking(ctx: pipeline.Context, run_id: str) -> None:
    pipeline.fail_tracking(ctx, run_id)


@task(name="gate-and-publish")
def publish_candidate(ctx: pipeline.Context, snapshot, result, metrics: dict, mlmodel: bytes, params, run_id: str) -> dict:
    # the step holds the publish lease itself (in the store, so a killed run's lock expires)
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
