"""The grunfeld task's data: statsmodels' copy of the Grunfeld investment panel, one user per firm,
one example per year (in year order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.fleet.user_data import EPOCH, UserData, device_metadata

_TASK_FOLDER = Path(__file__).resolve().parent  # this task's own task.yaml: never the task a process serves


def load_users(users: list[str] | None = None) -> list[UserData]:
    from statsmodels.datasets import grunfeld

    frame = grunfeld.load_pandas().data.sort_values(["firm", "year"])
    task = tasks.resolve(str(_TASK_FOLDER))
    fleet = []
    for index, (firm, rows) in enumerate(frame.groupby("firm", sort=True)):
        if users is not None and firm not in users:
            continue
        inputs = rows[["value", "capital"]].to_numpy(np.float64)[:, None, :]  # a row: a window of one sample
        target = np.log1p(rows["invest"].to_numpy(np.float64))
        years = rows["year"].to_numpy(int)
        captured = EPOCH + ((years - years.min()) * 7).astype("timedelta64[D]").astype("timedelta64[ms]")
        fleet.append(UserData(f"firm-{firm}", inputs, target, [f"{firm}:{y}" for y in years],
                              captured + np.timedelta64(index, "h"), device_metadata(index), task=task))
    return fleet
