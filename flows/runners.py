"""Where per-batch validation fans out: threads in the flow's process by default, or a Dask cluster
(`TANDEM_DASK_ADDRESS=tcp://scheduler:8786`, or `local` for a local multi-process cluster)."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from tandem.settings import Settings


def batch_task_runner(settings: Settings):
    address = settings.dask_address
    if not address:
        return ThreadPoolTaskRunner(max_workers=4)
    if address == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    return DaskTaskRunner(address=address)
