"""The train-and-release pipeline as plain steps: no Prefect in here.

Each step takes what it needs explicitly (the settings, the store, the tracker) and returns plain
values. `tasks/` wraps each step one to one as a Prefect task, `flows/` composes them; the CLI, the
simulation and the tests call these same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from tandem import task as tasks
from tandem.data import bulk_ingest, ingest, reference, revocations, store_task, table
from tandem.data.ingest import BatchRef
from tandem.data.limits import Limits, ReferenceKeys
from tandem.data.reference_keys import reference_keys
from tandem.data.snapshot import Snapshot, table_snapshot
from tandem.data.store import Store, store_from_settings
from tandem.privacy import sealing
from tandem.release import candidate, signing
from tandem.release.lease import lease
from tandem.release.params import RunParams
from tandem.release.run_report import run_report
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task import Task
from tandem.training import pretrain as training
from tandem.training.model import TrainResult


@dataclass(frozen=True)
class Context:
    """What every step may touch, built once per entry point from its settings."""

    settings: Settings

    def __reduce__(self):  # travels to Dask workers as its settings; clients are rebuilt there
        return (Context, (self.settings,))

    @cached_property
    def task(self) -> Task:
        """The task this entry point serves, resolved once from its settings and passed down."""
        return tasks.resolve(self.settings.task)

    @cached_property
    def store(self) -> Store:
        return store_from_settings(self.settings)

    @cached_property
    def tracker(self) -> Tracker:
        return Tracker(self.settings)

    @cached_property
    def keyring(self) -> dict[str, bytes]:
        return sealing.keyring(self.settings)

    @cached_property
    def reference_windows(self) -> ReferenceKeys:
        """What marks the reference set's windows (`tandem.data.reference_keys`): a batch holding any is
        quarantined (it would inflate what the candidates are scored on)."""
        try:
            users = reference.load(self.store, self.settings.model_name, self.task)
        except reference.ReferenceError:
            return ReferenceKeys()
        return reference_keys(self.store, users, self.task)

    @cached_property
    def revoked(self) -> frozenset[str]:
        """sha256 of withdrawn batches: a later upload of the same bytes is quarantined."""
        return revocations.load(self.store).digests

    @cached_property
    def signer(self) -> signing.Signer:
        return signing.require_signer(self.settings)


def preflight(ctx: Context) -> None:
    """Fail before any work on what would fail a run late: a missing or bad signing key, a store that
    cannot be reached (no bucket, no credentials, endpoint down), no reference set to score candidates on."""
    if ctx.settings.signing_key is not None or not ctx.settings.signing_key_block:
        ctx.signer  # (a key in a Prefect block is read by the flow, which alone may talk to Prefect)
    ctx.store.list(ingest.LEDGER)
    store_task.claim(ctx.store, ctx.task)
    if reference.latest_manifest(ctx.store, ctx.settings.model_name) is None:
        raise reference.ReferenceError(f"no reference set for {ctx.settings.model_name} in the store: candidates cannot be "
                                       f"scored; register the team's test-device recordings with `tandem reference add FILE`")


# ingest
def discover_batches(ctx: Context) -> list[BatchRef]:
    store_task.claim(ctx.store, ctx.task)  # never ingest another task's landing zone into this task's table
    return ingest.discover(ctx.store)


def judge_batch(ctx: Context, ref: BatchRef, run_id: str | None = None) -> dict:
    """Validate one batch and record it in the ledger once (accepted, or quarantined with a reason): a
    chunk of one, the ingest's one path."""
    return ingest_chunk(ctx, [ref], run_id)[0]


def plan_chunks(ctx: Context, refs: list[BatchRef]) -> list[list[BatchRef]]:
    return bulk_ingest.plan_chunks(refs, bulk_ingest.default_workers())


def ingest_chunk(ctx: Context, refs: list[BatchRef], run_id: str | None = None) -> list[dict]:
    """Validate a chunk of batches in one pass, append the good rows to the table in one commit,
    quarantine the bad ones, ledger all of them once."""
    judges = bulk_ingest.Judges(ctx.task, ctx.keyring, ctx.settings.expectations_dir, Limits.from_settings(ctx.settings),
                                reference_windows=ctx.reference_windows, revoked=ctx.revoked)
    return bulk_ingest.ingest_chunk(ctx.store, refs, judges, run_id)


def ingest_chunks(ctx: Context, chunks: list[list[BatchRef]], run_id: str | None = None) -> list[dict]:
    """Every chunk, in parallel processes on this machine."""
    return bulk_ingest.run_chunks(ctx.settings, chunks, run_id, reference_windows=ctx.reference_windows, revoked=ctx.revoked)


def settle_landing(ctx: Context) -> dict:
    """Compact the landing zone's cursors, close the finished days; the table's version now."""
    return {"closed_partitions": bulk_ingest.settle(ctx.store), "table_version": table.table_version(ctx.store)}


def summarize(entries: list[dict]) -> dict:
    """What this run recorded (entries another run had recorded first are not counted)."""
    entries = [e for e in entries if e.get("new", True)]
    quarantined = [e for e in entries if e["outcome"] == "quarantined"]
    return {"new_batches": len(entries), "accepted": len(entries) - len(quarantined), "quarantined": len(quarantined),
            "quarantine_reasons": {e["key"]: e["reason"] for e in quarantined}}


def ingest_new(ctx: Context, run_id: str | None = None) -> dict:
    """`tandem ingest` in-process: discover, validate, ledger and append the new batches."""
    refs = discover_batches(ctx)
    entries = ingest_chunks(ctx, plan_chunks(ctx, refs), run_id)
    return {**summarize(entries), **settle_landing(ctx), "reference_check": ctx.reference_windows.describe()}


# train
def snapshot_dataset(ctx: Context, data_window_days: int | None = None) -> Snapshot | None:
    """The training data: the table's latest version (rows of batches within the window), less what
    was withdrawn (`tandem revoke`)."""
    return table_snapshot(ctx.store, ctx.task, data_window_days, revocations.load(ctx.store))


def already_trained(ctx: Context, snapshot_id: str) -> dict | None:
    return candidate.trained_record(ctx.store, ctx.settings.model_name, snapshot_id)


def run_params(ctx: Context, params: RunParams | None = None) -> RunParams:
    """The run's parameters for the served task: what `params` was given, the task's own values for
    the rest (`RunParams.on`)."""
    return (params or RunParams()).on(ctx.task)


def start_tracking(ctx: Context, snapshot: Snapshot, params: RunParams, summary: dict) -> str:
    return candidate.start_tracking(ctx.tracker, snapshot, run_params(ctx, params), summary)


def pretrain_model(ctx: Context, snapshot: Snapshot, params: RunParams, run_id: str | None) -> TrainResult:
    """Pretrain on the snapshot less its held-out pseudonyms; per-epoch metrics go to the MLflow run
    `run_id` (None: untracked)."""
    def on_epoch(epoch: int, metrics: dict) -> None:
        ctx.tracker.log_metrics(run_id, metrics, step=epoch)

    rows = candidate.training_rows(ctx.task, snapshot, ctx.settings)  # the held-out pseudonyms are never trained on
    params = run_params(ctx, params)
    return training.pretrain(ctx.task, rows, params.train, on_epoch=on_epoch if run_id else None, dp_sgd=params.dp_sgd)


def evaluate_model(ctx: Context, snapshot: Snapshot, result: TrainResult, run_id: str) -> dict:
    """Score the candidate on the held-out pseudonyms and on the reference set."""
    return candidate.evaluate(ctx.task, ctx.tracker, ctx.store, snapshot, result, run_id)


def convert_model(ctx: Context, result: TrainResult, params: RunParams, metadata: dict) -> bytes:
    return training.convert(ctx.task, result, run_params(ctx, params), metadata)


# release
PUBLISH_WAIT_SECONDS = 3600


def gate_and_publish(ctx: Context, snapshot: Snapshot, result: TrainResult, metrics: dict, mlmodel: bytes,
                     params: RunParams, run_id: str) -> dict:
    """Under the publish lease (one publisher per model; a crashed holder's lease expires): a snapshot
    another run already published while this one trained is not published twice."""
    name = f"publish-{ctx.settings.model_name}"
    with lease(ctx.store, name, ctx.settings.publish_lease_seconds, PUBLISH_WAIT_SECONDS):
        done = already_trained(ctx, snapshot.snapshot_id)
        if done and not params.force:
            ctx.tracker.end_run(run_id, "FINISHED")
            return {"status": "up-to-date", "snapshot": snapshot.snapshot_id, "previous": done,
                    "model": ctx.settings.model_name, "mlflow_run_id": run_id}
        outcome = candidate.gate_and_publish(ctx.task, ctx.tracker, ctx.store, snapshot, result, metrics, mlmodel,
                                             run_params(ctx, params), run_id, ctx.signer)
        record_trained(ctx, snapshot.snapshot_id, outcome)
        return outcome


def fail_tracking(ctx: Context, run_id: str) -> None:
    ctx.tracker.end_run(run_id, "FAILED")


def record_trained(ctx: Context, snapshot_id: str, outcome: dict) -> None:
    candidate.record_trained(ctx.store, ctx.settings.model_name, snapshot_id, outcome)


def report(outcome: dict) -> str:
    return run_report(outcome)
