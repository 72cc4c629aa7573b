"""The simulated fleet: users, the windows each keeps on the device, and the device's metadata.

Two sources: real HAPT recordings (30 users) and a small seeded synthetic generator for fast tests.
Raw user ids and raw windows stay here, on the "device"; what leaves it goes through `sharing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tandem.contract import features
from tandem.contract.features import ACTIVITIES, HAPT_LABELS, WINDOW
from tandem.fleet.hapt import load_recordings

_EPOCH = np.datetime64("2026-01-05T08:00:00", "ms")
_DEVICE_MODELS = ("iPhone14,5", "iPhone15,2", "iPhone15,4", "iPhone16,1")
_OS_VERSIONS = ("17.6", "18.1", "18.4")
_LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES")


@dataclass
class UserData:
    user_id: str  # the raw id: it never leaves the device
    windows: np.ndarray  # (n, WINDOW, 6) raw sensor windows
    labels: np.ndarray  # (n,) activity names
    window_keys: list[str]  # stable per window on this device, e.g. "0:1024" (experiment:start)
    captured_at: np.ndarray  # (n,) datetime64[ms]
    device: dict = field(default_factory=dict)

    @cached_property
    def features(self) -> np.ndarray:
        return features.featurize(self.windows)

    def __len__(self) -> int:
        return len(self.labels)


def _device_metadata(index: int) -> dict:
    return {
        "device_model": _DEVICE_MODELS[index % len(_DEVICE_MODELS)],
        "os_version": _OS_VERSIONS[index % len(_OS_VERSIONS)],
        "app_version": "1.4.0",
        "locale": _LOCALES[index % len(_LOCALES)],
    }


def hapt_fleet(users: list[int] | None = None) -> list[UserData]:
    """One UserData per HAPT user (1..30), windows in capture order."""
    by_user: dict[int, list] = {}
    for rec in load_recordings():
        if users is None or rec.user in users:
            by_user.setdefault(rec.user, []).append(rec)
    fleet = []
    for index, user in enumerate(sorted(by_user)):
        windows, labels, keys, times = [], [], [], []
        for rec in by_user[user]:
            w, codes, starts = features.cut_windows(rec.signals, rec.labels)
            windows.append(w)
            labels += [HAPT_LABELS[int(c)] for c in codes]
            keys += [f"{rec.experiment}:{int(s)}" for s in starts]
            offset = np.timedelta64(user, "D") + np.timedelta64(rec.experiment, "h")
            times.append(_EPOCH + offset + (starts * 20).astype("timedelta64[ms]"))  # 50 Hz: 20 ms a sample
        fleet.append(UserData(f"hapt-user-{user:02d}", np.concatenate(windows), np.asarray(labels),
                              keys, np.concatenate(times), _device_metadata(index)))
    return fleet


def synthetic_fleet(n_users: int = 8, windows_per_class: int = 12, seed: int = 0) -> list[UserData]:
    """Seeded synthetic users: each activity a distinct motion pattern, each user a personal offset."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW) / 50.0
    fleet = []
    for index in range(n_users):
        user_bias = rng.normal(0, 0.08, size=6)
        windows, labels = [], []
        for c, name in enumerate(ACTIVITIES):
            gravity = np.roll([1.0, 0.0, 0.0], c % 3) * (1 if c < 3 else -1)
            freq, amp = 1.0 + 0.5 * c, (0.6 if c < 3 else 0.05) * (1 + 0.3 * c)
            for _ in range(windows_per_class):
                phase = rng.uniform(0, 2 * np.pi)
                wave = amp * np.sin(2 * np.pi * freq * t + phase)[:, None]
                acc = gravity + wave * rng.uniform(0.5, 1.0, 3) + rng.normal(0, 0.05, (WINDOW, 3))
                gyro = wave * rng.uniform(0.2, 1.5, 3) + rng.normal(0, 0.05, (WINDOW, 3))
                windows.append(np.hstack([acc, gyro]) + user_bias)
                labels.append(name)
        order = rng.permutation(len(labels))
        n = len(labels)
        fleet.append(UserData(
            f"synthetic-user-{index:02d}", np.stack(windows)[order], np.asarray(labels)[order],
            [f"0:{i * 64}" for i in range(n)],
            _EPOCH + np.timedelta64(index, "D") + (np.arange(n) * 1280).astype("timedelta64[ms]"),
            _device_metadata(index),
        ))
    return fleet


def load_fleet(source: str = "hapt", **kwargs) -> list[UserData]:
    if source == "hapt":
        return hapt_fleet(**kwargs)
    if source == "synthetic":
        return synthetic_fleet(**kwargs)
    raise ValueError(f"unknown data source {source!r}: use 'hapt' or 'synthetic'")


def split_users(fleet: list[UserData], holdout_every: int = 5) -> tuple[list[UserData], list[UserData]]:
    """(sharing users, evaluation users): every `holdout_every`-th user never shares anything."""
    sharing = [u for i, u in enumerate(fleet) if (i + 1) % holdout_every]
    evaluation = [u for i, u in enumerate(fleet) if not (i + 1) % holdout_every]
    return sharing, evaluation
