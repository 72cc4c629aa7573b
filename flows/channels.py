"""Promote and rollback: move the production channel (MLflow alias and store pointer together)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tandem import channels
from tandem.config import Settings
from tandem.storage import store_from_settings


@flow(name="promote")
def promote(version: str | None = None) -> dict:
    """Move production to the staging version, or to the given version."""
    settings = Settings.from_env()
    pointer = channels.promote(settings, store_from_settings(settings), version)
    get_run_logger().info("production -> version %s (was %s)", pointer["version"], (pointer["history"] or [None])[0])
    return pointer


@flow(name="rollback")
def rollback() -> dict:
    """Move production back to its previous version."""
    settings = Settings.from_env()
    pointer = channels.rollback(settings, store_from_settings(settings))
    get_run_logger().info("production rolled back to version %s", pointer["version"])
    return pointer
