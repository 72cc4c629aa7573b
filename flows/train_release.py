"""The main job: from shared batches in the landing zone to a published, updatable Core ML release."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.runners import batch_task_runner
from tandem.params import RunParams
from tasks.ingest import discover_batches, validate_batch
from tasks.release import already_trained, fail_tracking, publish_candidate, record_trained, report_run, start_tracking
from tasks.train import convert_model, evaluate_model, pretrain_model, snapshot_dataset


@flow(name="validate-batches", task_runner=batch_task_runner())
def validate_batches(refs: list, run_id: str | None = None) -> list[dict]:
    """Validate each new batch once (in parallel; on a Dask cluster when TANDEM_DASK_ADDRESS is set)."""
    return [f.result() for f in validate_batch.map(refs, run_id=run_id)]


@flow(name="train-and-release", log_prints=True)
def train_and_release(params: RunParams = RunParams()) -> dict:
    """Ingest new batches, validate each (quarantining bad ones), snapshot the accepted data, pretrain,
    evaluate on users who never shared, convert to an updatable Core ML model and publish it."""
    log = get_run_logger()
    refs = discover_batches()
    log.info("%d new batch(es) in the landing zone", len(refs))
    entries = validate_batches(refs, flow_run.get_id()) if refs else []
    accepted = [e for e in entries if e["outcome"] == "accepted"]
    quarantined = [e for e in entries if e["outcome"] == "quarantined"]
    for e in quarantined:
        log.warning("quarantined batch %s: %s", e["batch_id"], e["reason"])
    summary = {"new_batches": len(entries), "accepted": len(accepted), "quarantined": len(quarantined),
               "quarantine_reasons": {e["batch_id"]: e["reason"] for e in quarantined}}

    snapshot = snapshot_dataset(params.data_window_days)
    if snapshot is None:
        log.info("No accepted data yet: nothing to train, nothing published.")
        return finish({**summary, "status": "no-data"})
    done = already_trained(snapshot.snapshot_id)
    if done and not params.force:
        log.info("No new batches since snapshot %s (%s): nothing trained, nothing published.",
                 snapshot.snapshot_id, done.get("outcome"))
        return finish({**summary, "status": "up-to-date", "snapshot": snapshot.snapshot_id, "previous": done})

    run_id = start_tracking(snapshot, params, summary)
    try:
        result = pretrain_model(snapshot, params.train, run_id, params.dp_sgd)
        metrics = evaluate_model(result, run_id)
        mlmodel = convert_model(result, params, {"snapshot": snapshot.snapshot_id, "mlflow_run_id": run_id})
        outcome = publish_candidate(snapshot, result, metrics, mlmodel, params, run_id)
    except BaseException:
        fail_tracking(run_id)
        raise
    record_trained(snapshot.snapshot_id, outcome)
    if outcome["status"] == "blocked":
        log.warning("Candidate version %s blocked, not published: %s", outcome["version"], "; ".join(outcome["reasons"]))
    return finish({**summary, **outcome})


def finish(outcome: dict) -> dict:
    report_run(outcome)
    return outcome
