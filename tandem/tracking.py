"""MLflow: where runs, metrics, the registry and its aliases live. SQLite under TANDEM_HOME by
default; any tracking URI (an MLflow server) by setting MLFLOW_TRACKING_URI."""

from __future__ import annotations

import logging

from tandem.config import Settings

logging.getLogger("alembic").setLevel(logging.WARNING)


def client(settings: Settings | None = None):
    import mlflow
    from mlflow import MlflowClient

    settings = settings or Settings.from_env()
    if settings.tracking_uri.startswith("sqlite:"):
        settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return MlflowClient(settings.tracking_uri)


def experiment_id(settings: Settings, name: str | None = None) -> str:
    """Get or create the model's experiment; a local store puts artifacts beside the database."""
    c = client(settings)
    name = name or f"tandem/{settings.model_name}"
    found = c.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    local = settings.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in settings.tracking_uri
    return c.create_experiment(name, artifact_location=settings.artifact_root if local else None)


def register_version(settings: Settings, run_id: str, artifact_path: str, description: str = "") -> str:
    """A registry version whose source is the run's Core ML artifact."""
    from mlflow.exceptions import MlflowException

    c = client(settings)
    try:
        c.create_registered_model(settings.model_name, description="Tandem foundation model (updatable Core ML)")
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
            raise
    run = c.get_run(run_id)
    mv = c.create_model_version(settings.model_name, f"{run.info.artifact_uri}/{artifact_path}", run_id=run_id,
                                description=description)
    return str(mv.version)


def alias_version(settings: Settings, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException:
        return None
