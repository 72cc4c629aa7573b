"""The train-and-release pipeline as plain steps: no Prefect in here.

Each step takes what it needs explicitly (the settings, the store, the tracker) and returns plain
values. `tasks/` wraps each step one to one as a Prefect task, `flows/` composes them; the CLI, the
simulation and the tests call these same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from tandem.data import ingest
from tandem.data.ingest import BatchRef
from tandem.data.snapshot import Snapshot, build_snapshot
from tandem.data.store import Store, store_from_settings
from tandem.privacy import sealing
from tandem.release import candidate
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


# ingest
def discover_batches(ctx: Context) -> list[BatchRef]:
    return ingest.discover(ctx.store)


def judge_batch(ctx: Context, ref: BatchRef, run_id: str | None = None) -> dict:
    """Validate one batch and record it in the ledger once (accepted, or quarantined with a reason)."""
    return ingest.process_batch(ctx.store, ref, ctx.keyring, run_id, ctx.settings.expectations_dir)


def summarize(entries: list[dict]) -> dict:
    quarantined = [e for e in entries if e["outcome"] == "quarantined"]
    return {"new_batches": len(entries), "accepted": len(entries) - len(quarantined), "quarantined": len(quarantined),
            "quarantine_reasons": {e["batch_id"]: e["reason"] for e in quarantined}}


# train
def snapshot_dataset(ctx: Context, data_window_days: int | None = None) -> Snapshot | None:
    entries = training.within_window(ingest.accepted_entries(ctx.store), data_window_days)
    return build_snapshot(ctx.store, entries, ctx.keyring) if entries else None


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
def gate_and_publish(ctx: Context, snapshot: Snapshot, result: TrainResult, metrics: dict, mlmodel: bytes,
                     params: RunParams, run_id: str) -> dict:
    return candidate.gate_and_publish(ctx.tracker, ctx.store, snapshot, result, metrics, mlmodel, params, run_id)


def fail_tracking(ctx: Context, run_id: str) -> None:
    ctx.tracker.end_run(run_id, "FAILED")


def record_trained(ctx: Context, snapshot_id: str, outcome: dict) -> None:
    candidate.record_trained(ctx.store, ctx.settings.model_name, snapshot_id, outcome)


def report(outcome: dict) -> str:
    return run_report(outcome)

