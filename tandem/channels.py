"""Moving a channel: the MLflow alias and the store's channel pointer move together or not at all.

The store pointer is written first (it is what app builds read); if the alias write then fails, the
pointer is put back as it was, so the two never disagree for longer than the failed call.
"""

from __future__ import annotations

from tandem.config import Settings
from tandem.release import channel_key, read_channel, set_channel
from tandem.storage import Store, put_json
from tandem.tracking import alias_version, client


def move_channel(settings: Settings, store: Store, channel: str, version: str | int, reason: str = "") -> dict:
    before = read_channel(store, settings.model_name, channel)
    pointer = set_channel(store, settings.model_name, channel, version, reason)
    try:
        client(settings).set_registered_model_alias(settings.model_name, channel, str(version))
    except Exception:
        if before is None:
            store.delete(channel_key(settings.model_name, channel))
        else:
            put_json(store, channel_key(settings.model_name, channel), before)
        raise
    return pointer


def channel_state(settings: Settings, store: Store, channel: str) -> dict:
    pointer = read_channel(store, settings.model_name, channel)
    return {"store": pointer["version"] if pointer else None, "mlflow": alias_version(settings, channel)}
