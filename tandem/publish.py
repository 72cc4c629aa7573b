"""Publish: track the candidate in MLflow (run, metrics, artifacts, registry version) and push it to
the store as an immutable, checksummed release; then move the channel (alias and pointer together).

MLflow calls go through a client with an explicit run id, never the global "active run", so tasks on
worker threads can log to the flow's run safely.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tandem import __version__
from tandem.channels import move_channel
from tandem.config import Settings
from tandem.release import write_release
from tandem.storage import Store
from tandem.tracking import client, experiment_id, register_version

COREML_ARTIFACT = "coreml"


def code_version() -> str:
    """The git commit when run from a checkout, else the package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def start_run(settings: Settings, run_name: str, params: dict, tags: dict) -> str:
    c = client(settings)
    run = c.create_run(experiment_id(settings), run_name=run_name, tags=tags)
    for key, value in _flatten(params).items():
        c.log_param(run.info.run_id, key, value)
    return run.info.run_id


def _flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_metrics(settings: Settings, run_id: str, metrics: dict, step: int | None = None, prefix: str = "") -> None:
    c = client(settings)
    for key, value in _flatten(metrics).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            c.log_metric(run_id, f"{prefix}{key}", float(value), step=step or 0)


def log_files(settings: Settings, run_id: str, files: dict[str, bytes], artifact_path: str | None = None) -> None:
    c = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
            c.log_artifact(run_id, str(Path(tmp) / name), artifact_path)


def end_run(settings: Settings, run_id: str, status: str = "FINISHED") -> None:
    client(settings).set_terminated(run_id, status)


def run_url(settings: Settings, run_id: str) -> str:
    """Where the run opens in the MLflow UI (a server's address, or the local UI's default)."""
    c = client(settings)
    run = c.get_run(run_id)
    base = settings.tracking_uri if settings.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def publish_release(settings: Settings, store: Store, run_id: str, files: dict[str, bytes], fields: dict,
                    channel: str | None) -> dict:
    """Register a version for the run's Core ML artifact, write the release, then move `channel`.
    `files` must hold model.mlmodel; `fields` goes into the manifest."""
    log_files(settings, run_id, files, COREML_ARTIFACT)
    version = register_version(settings, run_id, COREML_ARTIFACT, description=fields.get("summary", ""))
    manifest = write_release(store, settings.model_name, version, files, {
        **fields,
        "mlflow": {"run_id": run_id, "registered_model": settings.model_name, "version": version,
                   "tracking_uri": settings.tracking_uri if settings.tracking_uri.startswith("http") else "local"},
        "code_version": code_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    c = client(settings)
    c.set_model_version_tag(settings.model_name, version, "release", f"releases/{settings.model_name}/{version}/")
    c.log_dict(run_id, manifest, "release/manifest.json")
    if channel:
        move_channel(settings, store, channel, version, reason=f"run {run_id}")
    return manifest


def mark_blocked(settings: Settings, run_id: str, reasons: list[str]) -> str:
    """A candidate that failed a gate: registered and tagged, never on a channel."""
    version = register_version(settings, run_id, COREML_ARTIFACT, description="blocked: " + "; ".join(reasons))
    c = client(settings)
    c.set_model_version_tag(settings.model_name, version, "gate", "blocked")
    c.set_model_version_tag(settings.model_name, version, "gate_reasons", json.dumps(reasons)[:5000])
    return version
