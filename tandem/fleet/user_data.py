"""A simulated user's data on the device: raw inputs, labels or targets, capture times, the
device's metadata (the quasi-identifiers) and the task they were recorded for (which says how the
device featurizes them and what it shares)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tandem.contract import features
from tandem.task import Task

EPOCH = np.datetime64("2026-01-05T08:00:00", "ms")
_DEVICE_MODELS = ("iPhone14,5", "iPhone15,2", "iPhone15,4", "iPhone16,1")
_OS_VERSIONS = ("17.6", "18.1", "18.4")
_LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES")


@dataclass
class UserData:
    user_id: str  # the raw id: it never leaves the device
    windows: np.ndarray  # (n, WINDOW, channels) raw inputs (a tabular row: a window of one sample)
    labels: np.ndarray  # (n,) class names, or numeric targets
    window_keys: list[str]  # stable per window on this device, e.g. "0:1024" (experiment:start)
    captured_at: np.ndarray  # (n,) datetime64[ms]
    device: dict = field(default_factory=dict)
    index: int | None = None  # the user's place among all users of its source (None: its place in the list)
    task: Task | None = None  # the task the data was recorded for (a source sets it: `tandem.fleet.users`)

    def require_task(self) -> Task:
        """The task the data was recorded for; a user made without one cannot be featurized or shared."""
        if self.task is None:
            raise ValueError(f"{self.user_id}: UserData made without its task (pass task=, or load it through "
                             "tandem.fleet.users)")
        return self.task

    @property
    def featurization(self) -> features.Featurization:
        return features.of(self.require_task())

    @cached_property
    def features(self) -> np.ndarray:
        return self.featurization.featurize(self.windows)

    def __len__(self) -> int:
        return len(self.labels)


def device_metadata(index: int, quasi_identifiers=()) -> dict:
    """A simulated device's metadata: the four Tandem knows, plus a value for each other quasi-identifier
    a task names (so a team's own, e.g. ``region``, is shared like the others)."""
    known = {
        "device_model": _DEVICE_MODELS[index % len(_DEVICE_MODELS)],
        "os_version": _OS_VERSIONS[index % len(_OS_VERSIONS)],
        "app_version": "1.4.0",
        "locale": _LOCALES[index % len(_LOCALES)],
    }
    return known | {name: f"{name}-{index % 3}" for name in quasi_identifiers if name not in known}


def attach(users: list[UserData], task: Task) -> list[UserData]:
    """The task the users were recorded for, set on each (a loader builds them without it), and a
    value for every quasi-identifier the task names that their device metadata lacks."""
    for position, user in enumerate(users):
        user.task = task
        place = position if user.index is None else user.index
        user.device = device_metadata(place, task.quasi_identifiers) | user.device
    return users
