"""A task's users for the demo and the simulation: from its table file, its Python loader, or a
seeded synthetic stand-in derived from its inputs and target."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.contract import features
from tandem.fleet.user_data import EPOCH, UserData, attach, device_metadata
from tandem.task import BUILTIN, Task, TaskError
from tandem.task.kinds import kind_of


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


@dataclass
class Dropped:
    """What reading a task's table left out, and why: `tandem share` says it (never a silent loss)."""

    nan_rows: int = 0  # rows with a missing value in a column the task reads
    undeclared: dict[str, int] = field(default_factory=dict)  # label -> rows whose label is not a declared class
    users: list[str] = field(default_factory=list)  # users left with no usable example (raw ids: device-side only)

    def lines(self) -> list[str]:
        out = []
        if self.nan_rows:
            out.append(f"dropped {self.nan_rows} rows with a missing value (NaN) in a column the task reads")
        if self.undeclared:
            labels = ", ".join(f"{label!r}: {n}" for label, n in sorted(self.undeclared.items()))
            out.append(f"dropped {sum(self.undeclared.values())} rows whose label is not one of the task's classes "
                       f"({labels}): declare them in task.yaml `target.labels` to keep them")
        if self.users:
            out.append(f"dropped {len(self.users)} users with no usable example left; who never shares is unchanged "
                       "(held-out users are chosen by their place in the whole table)")
        return out


def load_users(task: Task, dropped: Dropped | None = None, **kwargs) -> list[UserData]:
    """The task's users; a table source counts what it leaves out into `dropped`."""
    source = task.data.source
    if source.kind == "loader":
        return attach(_function(task, source.loader)(**kwargs), task)
    return read_table(task, dropped=dropped, **kwargs)


def synthetic_users(task: Task, n_users: int, windows_per_class: int, seed: int) -> list[UserData]:
    source = task.data.source
    if source.kind == "loader" and source.synthetic:
        return attach(_function(task, source.synthetic)(n_users, windows_per_class, seed), task)
    return generated_users(task, n_users, windows_per_class, seed)


def _table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise TaskError(f"{path}: a table source is .parquet or .csv")


def read_table(task: Task, users: list | None = None, dropped: Dropped | None = None) -> list[UserData]:
    """The task's table file: one row per example (tabular) or per sample (sensor: windows are cut
    inside runs of one label within a session, never across a row with a missing value).

    What is left out is counted into `dropped`: rows with a NaN, rows whose label is not a declared
    class, users with nothing usable. A user keeps its place (its index among all the table's users)
    whatever is dropped, so a dropped user never shifts which users never share."""
    dropped = dropped if dropped is not None else Dropped()
    source = task.data.source
    path = Path(source.path)
    path = path if path.is_absolute() else (task.folder or Path(".")) / path
    if not path.is_file():
        raise TaskError(f"task {task.name}: data file {path} not found")
    frame = _table(path)
    featurization = features.of(task)
    inputs = {name: source.columns.get(name, name) for name in featurization.channels}
    wanted = [source.user, source.time, source.target, *inputs.values()] + ([source.session] if source.session else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise TaskError(f"{path}: no column(s) {', '.join(missing)} (the task names them)")
    place = {user: i for i, user in enumerate(sorted(frame[source.user].dropna().unique()))}
    everyone = set(place)
    broken = frame[wanted].isna().any(axis=1).to_numpy()
    dropped.nan_rows += int(broken.sum())
    kind = kind_of(task)
    undeclared = ~kind.declared(frame[source.target].to_numpy()) & ~broken  # left out like a row with a gap
    for label, n in frame.loc[undeclared, source.target].astype(str).value_counts().items():
        dropped.undeclared[label] = dropped.undeclared.get(label, 0) + int(n)
    broken = broken | undeclared
    frame = frame.assign(_broken=broken).dropna(subset=[source.user, source.time])
    times = frame[source.time]
    order_key = pd.to_datetime(times, utc=True) if not pd.api.types.is_numeric_dtype(times) else times
    frame = frame.assign(_order=order_key).sort_values([source.user, "_order"], kind="stable")
    fleet = []
    for user, rows in frame.groupby(source.user, sort=True):
        if users is not None and user not in users:
            everyone.discard(user)
            continue
        index = place[user]
        values = rows[list(inputs.values())].to_numpy(np.float64)
        broken = rows["_broken"].to_numpy()
        target = rows[source.target].to_numpy()
        if task.inputs.kind == "tabular":
            keep = ~broken
            windows, labels, starts = values[keep][:, None, :], target[keep], np.flatnonzero(keep)
            sessions = np.zeros(len(labels), dtype=int)
        else:
            parts = [_cut(featurization, values[m], target[m], broken[m]) + (s,) for s, m in _sessions(rows, source.session)]
            parts = [p for p in parts if len(p[1])]
            windows = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, 1, len(inputs)))
            labels = np.concatenate([p[1] for p in parts]) if parts else target[:0]
            starts = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int64)
            sessions = np.concatenate([np.full(len(p[1]), p[3]) for p in parts]) if parts else np.empty(0, int)
        labels = kind.labels(labels)
        keys = [f"{s}:{int(t)}" for s, t in zip(sessions, starts)]
        captured = EPOCH + np.timedelta64(index, "D") + (np.arange(len(labels)) * 1000).astype("timedelta64[ms]")
        if len(labels):
            fleet.append(UserData(f"user-{user}", windows, labels, keys, captured,
                                  device_metadata(index, task.quasi_identifiers), index=index, task=task))
            everyone.discard(user)
    dropped.users.extend(str(u) for u in sorted(everyone, key=str) if users is None or u in users)
    if not fleet:
        raise TaskError(f"{path}: no usable examples (check the label values and the window length)")
    return fleet


def _cut(featurization: features.Featurization, values: np.ndarray, target: np.ndarray, broken: np.ndarray):
    """Windows of one session, cut separately in each stretch between rows with a missing value
    (starts stay the sample's index in the session, so window keys do not move)."""
    edges = np.flatnonzero(broken)
    parts = []
    for begin, end in zip(np.r_[0, edges + 1], np.r_[edges, len(values)]):
        if end - begin >= 1:
            w, y, start = featurization.cut_windows(values[begin:end], target[begin:end])
            parts.append((w, y, start + begin))
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return np.empty((0, featurization.window, values.shape[1])), target[:0], np.empty(0, np.int64)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


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
    featurization, kind = features.of(task), kind_of(task)
    window, n_channels = featurization.window, len(featurization.channels)
    scale = np.array([featurization.channel_bounds[c] for c in featurization.channels]) / 8
    centre = (np.array([(c.min + c.max) / 2 for c in task.inputs.columns]) if task.inputs.kind == "tabular"
              else np.zeros(n_channels))
    n_classes = kind.synthetic_groups()
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
        z = np.tanh((X.mean(1) - centre) / np.where(scale > 0, scale, 1) @ weights / np.sqrt(n_channels))
        y = kind.synthetic_labels(np.asarray(labels), z, np.tanh(bias.sum()), rng)
        order = rng.permutation(len(y))
        n = len(y)
        fleet.append(UserData(f"synthetic-user-{index:02d}", X[order], y[order], [f"0:{i}" for i in range(n)],
                              EPOCH + np.timedelta64(index, "D") + (np.arange(n) * 1000).astype("timedelta64[ms]"),
                              device_metadata(index, task.quasi_identifiers), task=task))
    return fleet
