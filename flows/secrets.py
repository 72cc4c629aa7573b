"""The release signing key from a Prefect Secret block, for deployments that keep it there rather
than in the worker's environment. Read in the flow's process only, never returned from a task (task
results may be persisted)."""

from __future__ import annotations

from prefect.blocks.system import Secret
from pydantic import SecretStr

from tandem.settings import Settings


def with_signing_key(settings: Settings) -> Settings:
    """`settings`, with the signing key from the block `TANDEM_SIGNING_KEY_BLOCK` when the environment has none."""
    if settings.signing_key is not None or not settings.signing_key_block:
        return settings
    value = Secret.load(settings.signing_key_block).get()
    return settings.model_copy(update={"signing_key": SecretStr(str(value))})
