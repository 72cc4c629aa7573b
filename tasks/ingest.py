"""Ingest tasks."""

from __future__ import annotations

from prefect import task

from tandem import pipeline
from tandem.data.ingest import BatchRef
from tasks.retry import unless_store_unreachable


@task(name="discover-batches")
def discover_batches(ctx: pipeline.Context) -> list[BatchRef]:
    return pipeline.discover_batches(ctx)


@task(name="plan-chunks")
def plan_chunks(ctx: pipeline.Context, refs: list[BatchRef]) -> list[list[BatchRef]]:
    return pipeline.plan_chunks(ctx, refs)


# Retrying a chunk is safe: committed batches are found by their Delta transaction, ledger writes are create-only.
@task(name="ingest-chunk", task_run_name="ingest-chunk-{refs[0].batch_id}", retries=2, retry_delay_seconds=2,
      retry_condition_fn=unless_store_unreachable)
def ingest_chunk(ctx: pipeline.Context, refs: list[BatchRef], run_id: str | None = None) -> list[dict]:
    return pipeline.ingest_chunk(ctx, refs, run_id)


@task(name="ingest-chunks", retries=2, retry_delay_seconds=2, retry_condition_fn=unless_store_unreachable)
def ingest_chunks(ctx: pipeline.Context, chunks: list[list[BatchRef]], run_id: str | None = None) -> list[dict]:
    return pipeline.ingest_chunks(ctx, chunks, run_id)


@task(name="settle-landing")
def settle_landing(ctx: pipeline.Context) -> dict:
    return pipeline.settle_landing(ctx)
