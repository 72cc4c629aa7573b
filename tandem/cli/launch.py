"""Starting an orchestration flow from the CLI.

The library never imports `flows/` (the layer above it): like a Prefect worker, the CLI looks a flow
up by its entrypoint name (the same names `deployments/prefect.yaml` uses) and runs it."""

from __future__ import annotations

import importlib

from tandem.settings import Settings, prepare_prefect_home


def flow(entrypoint: str, settings: Settings):
    """``"flows.train_release:train_and_release"`` -> the flow object, with Prefect's home prepared."""
    prepare_prefect_home(settings)
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)
