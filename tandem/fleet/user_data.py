"""A simulated user's data on the device: raw inputs, labels or targets, capture times and the
device's metadata (the quasi-identifiers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tandem.contract import features

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

    @cached_property
    def features(self) -> np.ndarray:
        return features.featurize(self.windows)

    def __len__(self) -> int:
        return len(self.labels)


def device_metadata(index: int) -> dict:
    return {
        "device_model": _DEVICE_MODELS[index % len(_DEVICE_MODELS)],
        "os_version": _OS_VERSIONS[index % len(_OS_VERSIONS)],
        "app_version": "1.4.0",
        "locale": _LOCALES[index % len(_LOCALES)],
    }
