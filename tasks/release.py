"""Tracking, gate and publish tasks."""

from __future__ import annotations

from prefect import task

from tandem import candidate
from tandem.config import Settings
from tandem.publish import end_run
from tandem.storage import store_from_settings


@task(name="already-trained")
def already_trained(snapshot_id: str) -> dict | None:
    return candidate.trained_record(store_from_settings(), Settings.from_env().model_name, snapshot_id)


@task(name="start-tracking")
def start_tracking(snapshot, params, summary: dict) -> str:
    return candidate.start_tracking(Settings.from_env(), snapshot, params, summary)


@task(name="fail-tracking")
def fail_tracking(run_id: str) -> None:
    end_run(Settings.from_env(), run_id, "FAILED")


@task(name="gate-and-publish")
def publish_candidate(snapshot, result, metrics: dict, mlmodel: bytes, params, run_id: str, summary: dict) -> dict:
    return candidate.gate_and_publish(Settings.from_env(), store_from_settings(), snapshot, result, metrics,
                                      mlmodel, params, run_id)


@task(name="record-trained")
def record_trained(snapshot_id: str, outcome: dict) -> None:
    candidate.record_trained(store_from_settings(), Settings.from_env().model_name, snapshot_id, outcome)
