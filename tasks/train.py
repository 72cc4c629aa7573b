"""Snapshot, pretrain, evaluate and convert tasks."""

from __future__ import annotations

from prefect import task

from tandem import pipeline


@task(name="snapshot-dataset")
def snapshot_dataset(ctx: pipeline.Context, data_window_days: int | None = None):
    return pipeline.snapshot_dataset(ctx, data_window_days)


@task(name="already-trained")
def already_trained(ctx: pipeline.Context, snapshot_id: str) -> dict | None:
    return pipeline.already_trained(ctx, snapshot_id)


@task(name="pretrain")
def pretrain_model(ctx: pipeline.Context, snapshot, params, run_id: str):
    return pipeline.pretrain_model(ctx, snapshot, params, run_id)


@task(name="evaluate")
def evaluate_model(ctx: pipeline.Context, snapshot, result, run_id: str) -> dict:
    return pipeline.evaluate_model(ctx, snapshot, result, run_id)


@task(name="convert-to-coreml")
def convert_model(ctx: pipeline.Context, result, params, metadata: dict) -> bytes:
    return pipeline.convert_model(ctx, result, params, metadata)
