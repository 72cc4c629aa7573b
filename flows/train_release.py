"""The main job: from shared batches in the landing zone to a published, updatable Core ML release.
Composition only: every step is a task from `tasks/`, which wraps a step of `tandem.pipeline`."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.ephemeral import guard_ephemeral_server
from flows.runners import batch_task_runner
from flows.secrets import with_signing_key
from tandem import pipeline
from tandem.release.params import RunParams
from tandem.settings import Settings
from tasks.ingest import discover_batches, validate_batch
from tasks.release import (
    fail_tracking,
    publish_candidate,
    record_trained,
    report_run,
    start_tracking,
)
from tasks.train import (
    already_trained,
    convert_model,
    evaluate_model,
    pretrain_model,
    snapshot_dataset,
)


@flow(name="validate-batches", task_runner=batch_task_runner(Settings()))
def validate_batches(ctx: pipeline.Context, refs: list, run_id: str | None = None) -> list[dict]:
    """Validate each new batch once (in parallel; on a Dask cluster when TANDEM_DASK_ADDRESS is set)."""
    return [f.result() for f in validate_batch.map(ctx, refs, run_id=run_id)]


@flow(name="train-and-release", log_prints=True)
def train_and_release(params: RunParams = RunParams()) -> dict:
    """Ingest new batches, validate each (quarantining bad ones), snapshot the accepted data, pretrain,
    evaluate on users who never shared, convert to an updatable Core ML model and publish it."""
    guard_ephemeral_server()  # a killed run must not leave its ephemeral Prefect server behind
    log = get_run_logger()
    ctx = pipeline.Context(with_signing_key(Settings()))
    pipeline.preflight(ctx)
    refs = discover_batches(ctx)
    log.info("%d new batch(es) in the landing zone", len(refs))
    entries = validate_batches(ctx, refs, flow_run.get_id()) if refs else []
    summary = pipeline.summarize(entries)
    for batch_id, reason in summary["quarantine_reasons"].items():
        log.warning("quarantined batch %s: %s", batch_id, reason)

    snapshot = snapshot_dataset(ctx, params.data_window_days)
    if snapshot is None:
        log.info("No accepted data yet: nothing to train, nothing published.")
        return finish({**summary, "status": "no-data"})
    done = already_trained(ctx, snapshot.snapshot_id)
    if done and not params.force:
        log.info("No new batches since snapshot %s (%s): nothing trained, nothing published.",
                 snapshot.snapshot_id, done.get("outcome"))
        return finish({**summary, "status": "up-to-date", "snapshot": snapshot.snapshot_id, "previous": done})

    run_id = start_tracking(ctx, snapshot, params, summary)
    try:
        result = pretrain_model(ctx, snapshot, params, run_id)
        metrics = evaluate_model(ctx, result, run_id)
        mlmodel = convert_model(result, params, {"snapshot": snapshot.snapshot_id, "mlflow_run_id": run_id})
        outcome = publish_candidate(ctx, snapshot, result, metrics, mlmodel, params, run_id)
    except BaseException:
        fail_tracking(ctx, run_id)
        raise
    record_trained(ctx, snapshot.snapshot_id, outcome)
    if outcome["status"] == "blocked":
        log.warning("Candidate version %s blocked, not published: %s", outcome["version"], "; ".join(outcome["reasons"]))
    return finish({**summary, **outcome})


def finish(outcome: dict) -> dict:
    report_run(outcome)
    return outcome
