"""Starting an orchestration flow from the CLI.

The library never imports `flows/` (the layer above it): like a Prefect worker, the CLI looks a flow
up by its entrypoint name (the same names `deployments/prefect.yaml` uses) and runs it.

What the terminal shows: the flows' progress, not the engine's own error logs and tracebacks (the
error ends in one line from `tandem.cli.errors`); `--debug` shows everything."""

from __future__ import annotations

import importlib
import logging
import os

from tandem.settings import Settings, prefect_environment, prepare_prefect_home

EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def flow(entrypoint: str, settings: Settings):
    """``"flows.train_release:train_and_release"`` -> the flow object, with Prefect's home prepared
    (before Prefect is imported: it reads its settings then)."""
    prefect_environment(debug=bool(os.environ.get("TANDEM_DEBUG")))
    prepare_prefect_home(settings)
    module, _, name = entrypoint.partition(":")
    found = getattr(importlib.import_module(module), name)
    if not os.environ.get("TANDEM_DEBUG"):
        quiet_engine_errors()
    return found


ENGINE = ("prefect", "uvicorn", "fastapi", "sqlalchemy", "alembic", "httpx")
RUN_LOGS = ("prefect.flow_runs", "prefect.task_runs")  # the flows' own messages (progress, quarantines, blocks)


class _NoEngineErrors(logging.Filter):
    """Keeps the engine's warnings, errors and tracebacks out of the terminal (they stay in Prefect's
    API); the flows' own messages stay, except the engine's failure reports in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(ENGINE):
            return True
        if record.name.startswith(RUN_LOGS):
            failure = any(m in str(record.msg) for m in ("failed with exception", "Finished in state Failed",
                                                          "Crashed", "failed due to"))
            return record.levelno < logging.ERROR and not record.exc_info and not failure
        return record.levelno < logging.WARNING and not record.exc_info


def quiet_engine_errors() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NoEngineErrors) for f in handler.filters):
            handler.addFilter(_NoEngineErrors())
    # Prefect's log shipper writes "--- Error logging to API ---" itself when the server fails (a full
    # disk): the stdlib's switch for handler errors, off as in production
    logging.raiseExceptions = False


def _slow_start(e: BaseException) -> bool:
    while e is not None:
        if EPHEMERAL_TIMEOUT in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _stop_stalled_servers() -> None:
    """The temporary server that did not answer in time is still starting (Prefect leaves it): stop it
    before a retry. Found as this process's child running Prefect's server app (the library does not
    import Prefect)."""
    import psutil  # a dependency of dask.distributed

    for child in psutil.Process().children():
        try:
            if any("prefect.server.api.server:create_app" in part for part in child.cmdline()):
                child.terminate()
        except psutil.Error:
            continue


def run_flow(found, *args, **kwargs):
    """Call a flow. Prefect's temporary server can be slow to start on a busy machine (its first start
    migrates a new database): that start is retried once, then it is the error's one line (with the
    ways around it, see tandem.cli.errors)."""
    try:
        return found(*args, **kwargs)
    except Exception as e:
        if not _slow_start(e) or os.environ.get("PREFECT_API_URL"):
            raise
        _stop_stalled_servers()
        return found(*args, **kwargs)
