"""Ingest and validate tasks."""

from __future__ import annotations

from prefect import task

from tandem import ingest
from tandem.storage import store_from_settings


@task(name="discover-batches")
def discover_batches() -> list[ingest.BatchRef]:
    return ingest.discover(store_from_settings())


@task(name="validate-batch", task_run_name="validate-{ref.batch_id}", retries=2, retry_delay_seconds=2)
def validate_batch(ref: ingest.BatchRef, run_id: str | None = None) -> dict:
    return ingest.process_batch(store_from_settings(), ref, run_id)
