"""The simulated fleet: users, the examples each keeps on the device, and the device's metadata.

Two sources, both from the task the caller holds: its data set (a table file or a Python loader, see
`tandem.task`) and a small seeded synthetic stand-in for fast tests. Raw user ids and raw inputs
stay here, on the "device"; what leaves it goes through `sharing`.
"""

from __future__ import annotations

from tandem.fleet.task_source import Dropped, load_users, synthetic_users  # noqa: F401 (Dropped: re-exported for the CLI)
from tandem.fleet.user_data import EPOCH, UserData, device_metadata  # noqa: F401  (the fleet's public names)
from tandem.task import Task


def task_fleet(task: Task, **kwargs) -> list[UserData]:
    """The task's data set, one UserData per user, examples in capture order (`dropped=Dropped()`
    collects what a table source left out)."""
    return load_users(task, **kwargs)


def synthetic_fleet(task: Task, n_users: int = 8, windows_per_class: int = 12, seed: int = 0) -> list[UserData]:
    """The task's seeded synthetic stand-in: its own generator when the task names one, else one
    derived from its inputs and target."""
    return synthetic_users(task, n_users, windows_per_class, seed)


def load_fleet(task: Task, source: str = "task", **kwargs) -> list[UserData]:
    """"task" (the task's data set; its name works too) or "synthetic"."""
    if source == "synthetic":
        return synthetic_fleet(task, **kwargs)
    if source in ("task", task.name):
        return task_fleet(task, **kwargs)
    raise ValueError(f"unknown data source {source!r}: use 'task' (the task's data set, "
                     f"{task.data.name}) or 'synthetic'")


def place(user: UserData, position: int) -> int:
    """A user's place for choosing who never shares: its index among all users of its source when
    known (so a user dropped for bad data shifts no one), else its position in the list."""
    return position if user.index is None else user.index


def split_users(fleet: list[UserData], holdout_every: int = 5) -> tuple[list[UserData], list[UserData]]:
    """(sharing users, evaluation users): every `holdout_every`-th user never shares anything."""
    sharing = [u for i, u in enumerate(fleet) if (place(u, i) + 1) % holdout_every]
    evaluation = [u for i, u in enumerate(fleet) if not (place(u, i) + 1) % holdout_every]
    return sharing, evaluation
