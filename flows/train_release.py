"""The main job: from shared batches in the landing zone to a published, updatable Core ML release.
Composition only: every step is a task from `tasks/`, which wraps a step of `tandem.pipeline`."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.ephemeral import guard_ephemeral_server
from flows.ingest import ingest
from flows.secrets import with_signing_key
from tandem import pipeline
from tandem.release.params import RunParams
from tandem.settings import Settings
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


@flow(name="train-and-release", log_prints=True)
def train_and_release(params: RunParams = RunParams()) -> dict:
    """Ingest new batches (validate, quarantine bad ones, append to the table), train on the table's latest version, pretrain,
    evaluate on users who never shared, convert to an updatable Core ML model and publish it. What `params`
    leaves unset is the served task's own (its task.yaml), never another task's."""
    guard_ephemeral_server()  # a killed run must not leave its ephemeral Prefect server behind
    log = get_run_logger()
    ctx = pipeline.Context(with_signing_key(Settings()))
    params = pipeline.run_params(ctx, params)
    pipeline.preflight(ctx)
    summary = ingest()  # the ingest flow, as a subflow: new batches into the table first

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
        metrics = evaluate_model(ctx, snapshot, result, run_id)
        mlmodel = convert_model(ctx, result, params, {"snapshot": snapshot.snapshot_id, "mlflow_run_id": run_id})
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
