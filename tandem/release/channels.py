"""Moving a channel: the MLflow alias and the store's channel pointer move together or not at all.

The store pointer is written first (it is what app builds read); if the alias write then fails, the
pointer is put back as it was, so the two never disagree for longer than the failed call.
"""

from __future__ import annotations

from tandem.data.store import Store, put_json
from tandem.release.layout import IntegrityError, ReleaseError, channel_key, read_channel, set_channel
from tandem.release.signing import Signer
from tandem.release.tracker import Tracker


def move_channel(tracker: Tracker, store: Store, channel: str, version: str | int, reason: str = "",
                 history: list[str] | None = None, signer: Signer | None = None) -> dict:
    """Point `channel` at `version`, the pointer signed by `signer` (app builds refuse unsigned ones)."""
    try:
        before = read_channel(store, tracker.model_name, channel)
    except IntegrityError:  # a damaged pointer: replaced (and not restored if the alias fails)
        before = None
    pointer = set_channel(store, tracker.model_name, channel, version, reason, history, signer)
    try:
        tracker.set_alias(channel, str(version))
    except Exception:
        if before is None:
            store.delete(channel_key(tracker.model_name, channel))
        else:
            put_json(store, channel_key(tracker.model_name, channel), before)
        raise
    return pointer


def promote(tracker: Tracker, store: Store, version: str | None = None, signer: Signer | None = None) -> dict:
    """Move `production` to the staging version (or to `version`), re-signing its pointer."""
    if version is None:
        staging = read_channel(store, tracker.model_name, "staging")
        if staging is None:
            raise ReleaseError("nothing on staging to promote")
        version = staging["version"]
    return move_channel(tracker, store, "production", version, reason="promote", signer=signer)


def rollback(tracker: Tracker, store: Store, signer: Signer | None = None) -> dict:
    """Move `production` back to the version it pointed to before: a decision, so the pointer is re-signed."""
    current = read_channel(store, tracker.model_name, "production")
    if current is None or not current.get("history"):
        raise ReleaseError("production has no previous version to roll back to")
    previous, *older = current["history"]
    return move_channel(tracker, store, "production", previous, reason=f"rollback from {current['version']}",
                        history=older, signer=signer)


def channel_state(tracker: Tracker, store: Store, channel: str) -> dict:
    """Where a channel points in the store and in MLflow (they must agree)."""
    pointer = read_channel(store, tracker.model_name, channel)
    return {"store": pointer["version"] if pointer else None, "mlflow": tracker.alias_version(channel)}
