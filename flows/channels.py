"""Promote and rollback: move the production channel (MLflow alias and store pointer together)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.secrets import with_signing_key
from tandem import pipeline
from tandem.release import channels
from tandem.settings import Settings


@flow(name="promote")
def promote(version: str | None = None) -> dict:
    """Move production to the staging version, or to the given version."""
    ctx = pipeline.Context(with_signing_key(Settings()))  # the pointer is re-signed
    pointer = channels.promote(ctx.tracker, ctx.store, version, signer=ctx.signer)
    get_run_logger().info("production -> version %s (was %s)", pointer["version"], (pointer["history"] or [None])[0])
    return pointer


@flow(name="rollback")
def rollback() -> dict:
    """Move production back to its previous version."""
    ctx = pipeline.Context(with_signing_key(Settings()))  # the pointer is re-signed
    pointer = channels.rollback(ctx.tracker, ctx.store, signer=ctx.signer)
    get_run_logger().info("production rolled back to version %s", pointer["version"])
    return pointer
