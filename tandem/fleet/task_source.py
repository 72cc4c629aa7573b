"""A task's users for the demo and the simulation: from its table file, its Python loader, or a
seeded synthetic stand-in derived from its inputs and target."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.contract import features
from tandem.fleet.user_data import EPOCH, UserData, device_metadata
from tandem.task import BUILTIN, Task, TaskError


def _function(task: Task, ref: str):
    """``file.py:function`` in the task folder (a built-in task's module is imported as a package module)."""
    file, _, name = ref.partition(":")
    folder = task.folder or Path(".")
    path = (folder / file).resolve()
    if not path.is_file() or not name:
        raise TaskError(f"task {task.name}: loader {ref!r} is not <file.py>:<function> in {folder}")
    if path.parent.parent == BUILTIN.resolve():
        module = importlib.import_module(f"tandem.builtin_tasks.{path.parent.name}.{path.stem}")
    else:
        spec = importlib.util.spec_from_file_location(f"tandem_task_{task.name.replace('-', '_')}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    try:
        return getattr(module, name)
    except AttributeError:
        raise TaskError(f"task {task.name}: {path.name} has no function {name!r}") from None


def load_users(task: Task, **kwargs) -> list[UserData]:
    source = task.data.source
    if source.kind == "loader":
        return _function(task, source.loader)(**kwargs)
    return read_table(task, **kwargs)


def synthetic_users(task: Task, n_users: int, windows_per_class: int, seed: int) -> list[UserData]:
    source = task.data.source
    if source.kind == "loader" and source.synthetic:
        return _function(task, source.synthetic)(n_users, windows_per_class, seed)
    return generated_users(task, n_users, windows_per_class, seed)


def _table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise TaskError(f"{path}: a table source is .parquet or .csv")


def read_table(task: Task, users: list | None = None) -> list[UserData]:
    """The task's table file: one row per example (tabular) or per sample (sensor: windows are cut
    inside runs of one label within a session)."""
    source = task.data.source
    path = Path(source.path)
    path = path if path.is_absolute() else (task.folder or Path(".")) / path
    if not path.is_file():
        raise TaskError(f"task {task.name}: data file {path} not found")
    frame = _table(path)
    inputs = {name: source.columns.get(name, name) for name in features.CHANNELS}
    wanted = [source.user, source.time, source.target, *inputs.values()] + ([source.session] if source.session else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise TaskError(f"{path}: no column(s) {', '.join(missing)} (the task names them)")
    frame = frame.dropna(subset=wanted)
    times = frame[source.time]
    order_key = pd.to_datetime(times, utc=True) if not pd.api.types.is_numeric_dtype(times) else times
    frame = frame.assign(_order=order_key).sort_values([source.user, "_order"], kind="stable")
    fleet = []
    for index, (user, rows) in enumerate(frame.groupby(source.user, sort=True)):
        if users is not None and user not in users:
            continue
        values = rows[list(inputs.values())].to_numpy(np.float64)
        target = rows[source.target].to_numpy()
        target = target.astype(str) if features.CLASSIFICATION else target.astype(np.float64)
        if task.inputs.kind == "tabular":
            windows, labels, starts = values[:, None, :], target, np.arange(len(rows))
            sessions = np.zeros(len(rows), dtype=int)
        else:
            parts = [features.cut_windows(values[m], target[m]) + (s,) for s, m in _sessions(rows, source.session)]
            parts = [p for p in parts if len(p[1])]
            if not parts:
                continue
            windows = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            starts = np.concatenate([p[2] for p in parts])
            sessions = np.concatenate([np.full(len(p[1]), p[3]) for p in parts])
        keys = [f"{s}:{int(t)}" for s, t in zip(sessions, starts)]
        captured = EPOCH + np.timedelta64(index, "D") + (np.arange(len(labels)) * 1000).astype("timedelta64[ms]")
        if task.classification:
            keep = np.isin(labels, features.CLASSES)
            windows, labels, keys, captured = windows[keep], labels[keep], [k for k, m in zip(keys, keep) if m], captured[keep]
        if len(labels):
            fleet.append(UserData(f"user-{user}", windows, labels, keys, captured, device_metadata(index)))
    if not fleet:
        raise TaskError(f"{path}: no usable examples (check the label values and the window length)")
    return fleet


def _sessions(rows: pd.DataFrame, column: str | None):
    if column is None:
        yield 0, np.ones(len(rows), dtype=bool)
        return
    codes, _ = pd.factorize(rows[column])
    for s in range(codes.max() + 1):
        yield s, codes == s


def generated_users(task: Task, n_users: int, per_class: int, seed: int) -> list[UserData]:
    """A seeded stand-in shaped like the task: inputs within their declared ranges, each class (or the
    numeric target) a fixed function of them, each user a personal offset."""
    rng = np.random.default_rng(seed)
    window, n_channels = features.WINDOW, len(features.CHANNELS)
    scale = np.array([features.CHANNEL_BOUNDS[c] for c in features.CHANNELS]) / 8
    centre = (np.array([(c.min + c.max) / 2 for c in task.inputs.columns]) if task.inputs.kind == "tabular"
              else np.zeros(n_channels))
    n_classes = len(features.CLASSES) if task.classification else 4
    prototypes = rng.normal(0, 1, (n_classes, n_channels)) * scale
    weights = rng.normal(0, 1, n_channels)
    fleet = []
    for index in range(n_users):
        bias = rng.normal(0, 0.15, n_channels) * scale
        examples, labels = [], []
        for c in range(n_classes):
            for _ in range(per_class):
                wave = np.sin(np.linspace(0, (c + 1) * np.pi, window))[:, None] * prototypes[c] if window > 1 else 0
                x = centre + prototypes[c] + bias + wave + rng.normal(0, 0.1, (window, n_channels)) * scale
                if task.inputs.kind == "tabular":  # within the declared ranges, as validation demands
                    x = np.clip(x, [c.min for c in task.inputs.columns], [c.max for c in task.inputs.columns])
                examples.append(np.atleast_2d(x))
                labels.append(c)
        X = np.stack(examples)
        if task.classification:
            y = np.asarray(features.CLASSES)[labels]
        else:
            t = task.target
            z = np.tanh((X.mean(1) - centre) / np.where(scale > 0, scale, 1) @ weights / np.sqrt(n_channels))
            y = np.clip((t.min + t.max) / 2 + z * (t.max - t.min) / 4 + rng.normal(0, 0.01, len(z)) * (t.max - t.min)
                        + 0.1 * (t.max - t.min) * np.tanh(bias.sum()), t.min, t.max)
        order = rng.permutation(len(y))
        n = len(y)
        fleet.append(UserData(f"synthetic-user-{index:02d}", X[order], y[order], [f"0:{i}" for i in range(n)],
                              EPOCH + np.timedelta64(index, "D") + (np.arange(n) * 1000).astype("timedelta64[ms]"),
                              device_metadata(index)))
    return fleet
