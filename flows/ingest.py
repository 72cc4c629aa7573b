"""The ingest flow: discover the new batches, validate them in chunks (one GX pass per chunk), append the
good rows to the table, quarantine the bad ones, ledger every batch once. No training.
Composition only: every step is a task from `tasks/`, which wraps a step of `tandem.pipeline`."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.ephemeral import guard_ephemeral_server
from flows.runners import batch_task_runner
from tandem import pipeline
from tandem.settings import Settings
from tasks.ingest import discover_batches, ingest_chunk, ingest_chunks, plan_chunks, settle_landing


@flow(name="ingest-chunks-on-dask", task_runner=batch_task_runner(Settings()))
def ingest_on_dask(ctx: pipeline.Context, chunks: list, run_id: str | None = None) -> list[dict]:
    """One task per chunk on the Dask cluster of TANDEM_DASK_ADDRESS."""
    return [e for f in ingest_chunk.map(ctx, chunks, run_id=run_id) for e in f.result()]


@flow(name="ingest", log_prints=True)
def ingest() -> dict:
    """Ingest the new batches of the landing zone into the table of accepted rows (bad ones to quarantine)."""
    guard_ephemeral_server()  # a killed run must not leave its ephemeral Prefect server behind
    log = get_run_logger()
    ctx = pipeline.Context(Settings())
    refs = discover_batches(ctx)
    chunks = plan_chunks(ctx, refs)
    log.info("%d new batch(es) in the landing zone, %d chunk(s)", len(refs), len(chunks))
    run_id = flow_run.get_id()
    if not chunks:
        entries = []
    elif ctx.settings.dask_address:
        entries = ingest_on_dask.with_options(task_runner=batch_task_runner(ctx.settings))(ctx, chunks, run_id)
    else:
        entries = ingest_chunks(ctx, chunks, run_id)  # parallel processes on this machine
    summary = {**pipeline.summarize(entries), **settle_landing(ctx), "reference_check": ctx.reference_windows.describe()}
    for batch_id, reason in summary["quarantine_reasons"].items():
        log.warning("quarantined batch %s: %s", batch_id, reason)
    log.info("%d accepted, %d quarantined; table version %s", summary["accepted"], summary["quarantined"],
             summary["table_version"])
    log.info("reference check by %s (%s); false-match rate on accepted rows: %s", summary["reference_check"]["mode"],
             summary["reference_check"]["why"], summary["reference_check"]["false_match_rate"])
    return summary
