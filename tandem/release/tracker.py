"""The one place Tandem talks to MLflow: runs, batched metrics, artifacts, the registry and its
aliases. SQLite under TANDEM_HOME by default; any tracking URI (an MLflow server) by setting
MLFLOW_TRACKING_URI. Calls name their run explicitly (never MLflow's global "active run"), so tasks
on worker threads can log to the flow's run safely."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import tempfile
import time
from functools import cached_property
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from tandem.data.run_guard import alive
from tandem.settings import Settings

logging.getLogger("alembic").setLevel(logging.WARNING)
STALE_AFTER_SECONDS = 24 * 3600  # a run on another host with no end after a day is dead
MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call (params: 100)


def flatten(obj: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested parameters and metrics as MLflow keys."""
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _alive(pid: int) -> bool:
    return pid == os.getpid() or alive(pid)


class Tracker:
    """One MLflow client for one entry point's settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model_name = settings.model_name

    @cached_property
    def client(self) -> MlflowClient:
        uri = self.settings.tracking_uri
        if not uri.startswith("sqlite:"):
            return MlflowClient(uri)
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        # Two first runs on a new home would both create and migrate the database (alembic: "Online
        # migration expected to match one row"): one process at a time opens the store, under a lock.
        with open(database.with_name(database.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                client = MlflowClient(uri)
                client.search_experiments(max_results=1)  # creates and migrates the store now, under the lock
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return client

    @property
    def is_local(self) -> bool:
        uri = self.settings.tracking_uri
        return uri.startswith(("sqlite:", "file:")) or "://" not in uri

    def experiment_id(self, name: str | None = None) -> str:
        """Get or create the experiment; a local store puts artifacts beside the database."""
        name = name or f"tandem/{self.model_name}"
        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self.settings.artifact_root if self.is_local else None)
        except MlflowException as e:  # another run created it a moment ago
            if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code) and "already exists" not in str(e):
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    # runs
    def start_run(self, run_name: str, params: dict, tags: dict, experiment: str | None = None) -> str:
        self.close_stale_runs(experiment)
        owner = {"tandem.host": socket.gethostname(), "tandem.pid": str(os.getpid())}
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags={**tags, **owner})
        flat = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(flat), 100):
            self.client.log_batch(run.info.run_id, params=flat[i:i + 100])
        return run.info.run_id

    def log_params(self, run_id: str | None, params: dict, prefix: str = "") -> None:
        """More parameters of a run (names it has not logged yet: MLflow's params are write-once)."""
        if run_id is None:
            return
        flat = [Param(f"{prefix}{k}", str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(flat), 100):
            self.client.log_batch(run_id, params=flat[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict, step: int | None = None, prefix: str = "") -> None:
        now = int(time.time() * 1000)
        flat = [Metric(f"{prefix}{k}", float(v), now, step or 0) for k, v in flatten(metrics).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(flat), MAX_BATCH):
            self.client.log_batch(run_id, metrics=flat[i:i + MAX_BATCH])

    def log_files(self, run_id: str, files: dict[str, bytes], artifact_path: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            self.client.log_artifacts(run_id, tmp, artifact_path)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_dict(self, run_id: str, obj: dict, path: str) -> None:
        self.client.log_dict(run_id, obj, path)

    def log_figure(self, run_id: str, figure, path: str) -> None:
        self.client.log_figure(run_id, figure, path)

    def close_stale_runs(self, experiment: str | None = None) -> list[str]:
        """Mark FAILED the RUNNING runs whose process is gone (killed runs never end their own):
        on this host, a dead pid; elsewhere or untagged, no update for STALE_AFTER_SECONDS."""
        stale = []
        runs = self.client.search_runs([self.experiment_id(experiment)], "attributes.status = 'RUNNING'", max_results=500)
        for run in runs:
            tags = run.data.tags
            if tags.get("tandem.host") == socket.gethostname() and tags.get("tandem.pid", "").isdigit():
                dead = not _alive(int(tags["tandem.pid"]))
            else:
                dead = (time.time() * 1000 - (run.info.start_time or 0)) > STALE_AFTER_SECONDS * 1000
            if dead and run.info.run_id:
                self.client.set_tag(run.info.run_id, "tandem.closed", "owner process gone")
                self.client.set_terminated(run.info.run_id, "FAILED")
                stale.append(run.info.run_id)
        return stale

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def run_url(self, run_id: str) -> str:
        """Where the run opens in the MLflow UI (a server's address, or the local UI's default)."""
        run = self.client.get_run(run_id)
        uri = self.settings.tracking_uri
        base = uri if uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    # registry
    def register_version(self, run_id: str, artifact_path: str, description: str = "") -> str:
        """A registry version whose source is the run's Core ML artifact."""
        try:
            self.client.create_registered_model(self.model_name, description="Tandem foundation model (updatable Core ML)")
        except MlflowException as e:
            if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
                raise
        run = self.client.get_run(run_id)
        mv = self.client.create_model_version(self.model_name, f"{run.info.artifact_uri}/{artifact_path}",
                                              run_id=run_id, description=description)
        return str(mv.version)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def alias_version(self, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None
