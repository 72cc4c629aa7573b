"""The train-and-release pipeline as plain steps: no Prefect in here.

Each step takes what it needs explicitly (the settings, the store, the tracker) and returns plain
values. `tasks/` wraps each step one to one as a Prefect task, `flows/` composes them; the CLI, the
simulation and the tests call these same steps (``run_pipeline`` is the whole thing in-process).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from tandem.data import ingest, revocations
from tandem.data.ingest import BatchRef
from tandem.data.limits import Limits, Usage, feature_digests, features_frame
from tandem.data.snapshot import Snapshot, build_snapshot
from tandem.data.store import Store, store_from_settings
from tandem.fleet import devices
from tandem.privacy import sealing
from tandem.release import candidate, signing
from tandem.release.lease import lease
from tandem.release.params import RunParams
from tandem.release.run_report import run_report
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.training import pretrain as training
from tandem.training.model import TrainResult


@dataclass(frozen=True)
class Context:
    """What every step may touch, built once per entry point from its settings."""

    settings: Settings

    def __reduce__(self):  # travels to Dask workers as its settings; clients are rebuilt there
        return (Context, (self.settings,))

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
    def usage(self) -> Usage:
        """Accepted rows and batches per pseudonym and day, as the ledger stood when the run began."""
        return Usage.from_entries(ingest.accepted_entries(self.store))

    @cached_property
    def holdout(self) -> frozenset[str]:
        """Digests of the evaluation users' windows: a batch holding any is quarantined."""
        try:
            users = devices.load_evaluation(self.settings.home)
        except FileNotFoundError:
            return frozenset()
        return frozenset(d for u in users for d in feature_digests(features_frame(u.features)))

    @cached_property
    def signer(self) -> signing.Signer:
        return signing.require_signer(self.settings)


def preflight(ctx: Context) -> None:
    """Fail before any work on what would fail a run late: a missing or bad signing key, a store that
    cannot be reached (no bucket, no credentials, endpoint down)."""
    if ctx.settings.signing_key is not None or not ctx.settings.signing_key_block:
        ctx.signer  # (a key in a Prefect block is read by the flow, which alone may talk to Prefect)
    ctx.store.list(ingest.LEDGER)


# ingest
def discover_batches(ctx: Context) -> list[BatchRef]:
    return ingest.discover(ctx.store)


def judge_batch(ctx: Context, ref: BatchRef, run_id: str | None = None) -> dict:
    """Validate one batch and record it in the ledger once (accepted, or quarantined with a reason)."""
    entry = ingest.process_batch(ctx.store, ref, ctx.keyring, run_id, ctx.settings.expectations_dir,
                                 Limits.from_settings(ctx.settings), ctx.usage, ctx.holdout)
    if entry["outcome"] == "accepted":
        ctx.usage.add(entry)  # batches judged later in this run (in this process) count it
    return entry


def summarize(entries: list[dict]) -> dict:
    quarantined = [e for e in entries if e["outcome"] == "quarantined"]
    return {"new_batches": len(entries), "accepted": len(entries) - len(quarantined), "quarantined": len(quarantined),
            "quarantine_reasons": {e["key"]: e["reason"] for e in quarantined}}


# train
def snapshot_dataset(ctx: Context, data_window_days: int | None = None) -> Snapshot | None:
    """The accepted batches (less what was withdrawn) as one dataset."""
    withdrawn = revocations.load(ctx.store)
    entries = [e for e in ingest.accepted_entries(ctx.store) if e["batch_id"] not in withdrawn.batches]
    entries = training.within_window(entries, data_window_days)
    return build_snapshot(ctx.store, entries, ctx.keyring, withdrawn) if entries else None


def already_trained(ctx: Context, snapshot_id: str) -> dict | None:
    return candidate.trained_record(ctx.store, ctx.settings.model_name, snapshot_id)


def start_tracking(ctx: Context, snapshot: Snapshot, params: RunParams, summary: dict) -> str:
    return candidate.start_tracking(ctx.tracker, snapshot, params, summary)


def pretrain_model(ctx: Context, snapshot: Snapshot, params: RunParams, run_id: str | None) -> TrainResult:
    """Pretrain on the snapshot; per-epoch metrics go to the MLflow run `run_id` (None: untracked)."""
    def on_epoch(epoch: int, metrics: dict) -> None:
        ctx.tracker.log_metrics(run_id, metrics, step=epoch)

    return training.pretrain(snapshot.frame, params.train, on_epoch=on_epoch if run_id else None)


def evaluate_model(ctx: Context, result: TrainResult, run_id: str) -> dict:
    return candidate.evaluate_on_devices(ctx.tracker, result, run_id)


def convert_model(result: TrainResult, params: RunParams, metadata: dict) -> bytes:
    return training.convert(result, params, metadata)


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
        outcome = candidate.gate_and_publish(ctx.tracker, ctx.store, snapshot, result, metrics, mlmodel, params,
                                             run_id, ctx.signer)
        record_trained(ctx, snapshot.snapshot_id, outcome)
        return outcome


def fail_tracking(ctx: Context, run_id: str) -> None:
    ctx.tracker.end_run(run_id, "FAILED")


def record_trained(ctx: Context, snapshot_id: str, outcome: dict) -> None:
    candidate.record_trained(ctx.store, ctx.settings.model_name, snapshot_id, outcome)


def report(outcome: dict) -> str:
    return run_report(outcome)


def run_pipeline(ctx: Context, params: RunParams) -> dict:
    """The whole train-and-release, in-process and in order (the flow does the same with Prefect)."""
    preflight(ctx)
    entries = [judge_batch(ctx, ref) for ref in discover_batches(ctx)]
    summary = summarize(entries)
    snapshot = snapshot_dataset(ctx, params.data_window_days)
    if snapshot is None:
        return {**summary, "status": "no-data"}
    done = already_trained(ctx, snapshot.snapshot_id)
    if done and not params.force:
        return {**summary, "status": "up-to-date", "snapshot": snapshot.snapshot_id, "previous": done}
    run_id = start_tracking(ctx, snapshot, params, summary)
    try:
        result = pretrain_model(ctx, snapshot, params, run_id)
        metrics = evaluate_model(ctx, result, run_id)
        mlmodel = convert_model(result, params, {"snapshot": snapshot.snapshot_id, "mlflow_run_id": run_id})
        outcome = gate_and_publish(ctx, snapshot, result, metrics, mlmodel, params, run_id)
    except BaseException:
        fail_tracking(ctx, run_id)
        raise
    record_trained(ctx, snapshot.snapshot_id, outcome)
    return {**summary, **outcome}
