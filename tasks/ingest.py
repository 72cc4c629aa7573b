"""Ingest tasks."""

from __future__ import annotations

from prefect import task

from tandem import pipeline
from tandem.data.ingest import BatchRef


@task(name="discover-batches")
def discover_batches(ctx: pipeline.Context) -> list[BatchRef]:
    return pipeline.discover_batches(ctx)


@task(name="validate-batch", task_run_name="validate-{ref.batch_id}", retries=2, retry_delay_seconds=2)
def validate_batch(ctx: pipeline.Context, ref: BatchRef, run_id: str | None = None) -> dict:
    return pipeline.judge_batch(ctx, ref, run_id)
