"""Snapshot, pretrain, evaluate and convert tasks."""

from __future__ import annotations

from prefect import task

from tandem import candidate, dataset, ingest, pretrain
from tandem.config import Settings
from tandem.publish import log_metrics
from tandem.storage import store_from_settings


@task(name="snapshot-dataset")
def snapshot_dataset(data_window_days: int | None = None) -> dataset.Snapshot | None:
    store = store_from_settings()
    entries = pretrain.within_window(ingest.accepted_entries(store), data_window_days)
    return dataset.build_snapshot(store, entries) if entries else None


@task(name="pretrain")
def pretrain_model(snapshot: dataset.Snapshot, config, mlflow_run_id: str, dp_sgd=None):
    settings = Settings.from_env()

    def on_epoch(epoch: int, metrics: dict) -> None:
        log_metrics(settings, mlflow_run_id, metrics, step=epoch)

    return pretrain.pretrain(snapshot.frame, config, on_epoch=on_epoch, dp_sgd=dp_sgd)


@task(name="evaluate")
def evaluate_model(result, mlflow_run_id: str) -> dict:
    return candidate.evaluate_on_devices(Settings.from_env(), result, mlflow_run_id)


@task(name="convert-to-coreml")
def convert_model(result, params, version_metadata: dict) -> bytes:
    return pretrain.convert(result, params, version_metadata)
