"""Limits on what one batch and one pseudonym may bring, and row digests for deduplication.

One device must not be able to dominate the training data (a 2M-row batch), exhaust the validator (a
file of 10,000 row groups), replay the same rows under fresh window ids, or smuggle in the
reference set's windows (the team's test devices candidates are scored on). Every breach quarantines the batch with the numbers involved.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tandem.contract.features import FEATURE_NAMES
from tandem.data import table
from tandem.data.store import Store
from tandem.settings import Settings


@dataclass(frozen=True)
class Limits:
    max_batch_bytes: int = 64 * 2**20
    max_row_groups: int = 64
    max_batch_rows: int = 10_000
    max_pseudonym_rows_per_day: int = 5_000
    max_pseudonym_batches_per_day: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(**{k: getattr(settings, k) for k in cls.__dataclass_fields__})


@dataclass
class Usage:
    """Accepted rows and batches per (pseudonym, capture day): what the table held when a day was first
    asked about, plus what this process admitted since. Chunks in parallel processes each start from
    the table, so one pseudonym's batches judged at the same moment in different chunks can pass a
    limit by at most one chunk's worth each; the next run sees them all."""

    store: Store | None = None
    rows: Counter = field(default_factory=Counter)
    batches: Counter = field(default_factory=Counter)
    loaded: set[str] = field(default_factory=set)

    def add(self, days: dict[str, int]) -> None:
        """Count an admitted batch, given its `pseudonym_days` (so later batches of this run see it)."""
        for pday, rows in days.items():
            self.rows[pday] += rows
            self.batches[pday] += 1

    def load(self, days: set[str]) -> None:
        """Count what the table already holds on `days` (once per day)."""
        todo = sorted(set(days) - self.loaded)
        self.loaded.update(todo)
        if self.store is None or not todo:
            return
        held = accepted_on(self.store, todo)
        if not held.num_rows:
            return
        counts = pa.table({"pseudonym": held.column("pseudonym"), "day": _utc_days(held.column("captured_at")),
                           "batch_id": held.column("batch_id")}) \
            .group_by(["pseudonym", "day"]).aggregate([([], "count_all"), ("batch_id", "count_distinct")])
        keys = [f"{p}/{d}" for p, d in zip(counts.column("pseudonym").to_pylist(), counts.column("day").to_pylist())]
        self.rows.update(dict(zip(keys, counts.column("count_all").to_pylist())))
        self.batches.update(dict(zip(keys, counts.column("batch_id_count_distinct").to_pylist())))


def accepted_on(store: Store, days: list[str]) -> pa.Table:
    """(pseudonym, captured_at, batch_id) of the table's rows captured on `days`: the table's file
    statistics let pyarrow skip every file outside them."""
    delta = table.open_table(store)
    if delta is None:
        return pa.table({"pseudonym": pa.array([], pa.string()), "captured_at": pa.array([], pa.timestamp("us", tz="UTC")),
                         "batch_id": pa.array([], pa.string())})
    start = pd.Timestamp(min(days), tz="UTC")
    end = pd.Timestamp(max(days), tz="UTC") + pd.Timedelta(days=1)
    captured = ds.field("captured_at")
    return delta.to_pyarrow_dataset().to_table(columns=["pseudonym", "captured_at", "batch_id"],
                                               filter=(captured >= start) & (captured < end))


def check_file(data: bytes, limits: Limits, parquet: pq.ParquetFile | None = None) -> str | None:
    """Before the batch is parsed: its size, and (from the parquet footer only) rows and row groups.
    `parquet`: the file already opened on `data` (its footer read once)."""
    if len(data) > limits.max_batch_bytes:
        return f"limit: {len(data)} bytes is more than the {limits.max_batch_bytes} a batch may have"
    try:
        meta = (parquet or pq.ParquetFile(io.BytesIO(data))).metadata
    except Exception:
        return None  # not parquet: the validator says so in its own words
    if meta.num_row_groups > limits.max_row_groups:
        return f"limit: {meta.num_row_groups} row groups is more than the {limits.max_row_groups} a batch may have"
    if meta.num_rows > limits.max_batch_rows:
        return f"limit: {meta.num_rows} rows is more than the {limits.max_batch_rows} a batch may have"
    return None


def pseudonym_days(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per ``<pseudonym>/<capture day>`` of one batch (pseudonyms only: never a raw id)."""
    instants = pd.to_datetime(frame["captured_at"], utc=True)
    return pseudonym_days_of([pa.table({"pseudonym": pa.array(frame["pseudonym"].astype(str)),
                                        "captured_at": pa.array(instants)})])[0]


def pseudonym_days_of(tables: list[pa.Table]) -> list[dict[str, int]]:
    """`pseudonym_days` of many batches (arrow tables with a UTC ``captured_at``) in one grouping:
    a chunk's thousands of batches cost one pass, not a pandas frame each."""
    if not tables:
        return []
    owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])

    def joined(name: str) -> pa.ChunkedArray:
        return pa.chunked_array([chunk for t in tables for chunk in t.column(name).chunks], tables[0].schema.field(name).type)

    counts = pa.table({"owner": owner, "pseudonym": joined("pseudonym"), "day": _utc_days(joined("captured_at"))}) \
        .group_by(["owner", "pseudonym", "day"]).aggregate([([], "count_all")])
    out: list[dict[str, int]] = [{} for _ in tables]
    for i, pseudonym, d, n in zip(*(counts.column(c).to_pylist() for c in ("owner", "pseudonym", "day", "count_all"))):
        out[i][f"{pseudonym}/{d}"] = n
    return out


def _utc_days(captured_at: pa.ChunkedArray) -> pa.ChunkedArray:
    """``YYYY-MM-DD`` of each UTC instant."""
    return pc.strftime(pc.cast(captured_at, pa.date32()), format="%Y-%m-%d")


def admission_columns(reference_windows: frozenset[str]) -> list[str]:
    """The columns `check_admission` reads (the features only when there are reference windows to compare with)."""
    return ["pseudonym", "captured_at", *(FEATURE_NAMES if reference_windows else ())]


def check_admission(days: dict[str, int], frame: pd.DataFrame | None, usage: Usage, limits: Limits,
                    reference_windows: frozenset[str]) -> str | None:
    """Why a valid batch may still not enter (a per-pseudonym limit, the reference set's windows), or None.
    `days`: the batch's `pseudonym_days`; `frame`: its rows, needed only when there are reference windows."""
    return check_usage(days, usage, limits) or check_reference(frame, reference_windows)


def check_usage(days: dict[str, int], usage: Usage, limits: Limits) -> str | None:
    usage.load({pday.split("/")[1] for pday in days})
    for pday, rows in sorted(days.items()):
        pseudonym, day = pday.split("/")
        total = usage.rows[pday] + rows
        if total > limits.max_pseudonym_rows_per_day:
            return (f"limit: pseudonym {pseudonym[:12]}… would have {total} rows on {day}, more than the "
                    f"{limits.max_pseudonym_rows_per_day} one pseudonym may share per day")
        if usage.batches[pday] + 1 > limits.max_pseudonym_batches_per_day:
            return (f"limit: pseudonym {pseudonym[:12]}… would have {usage.batches[pday] + 1} batches on {day}, more "
                    f"than the {limits.max_pseudonym_batches_per_day} one pseudonym may share per day")
    return None


def feature_digests(frame: pd.DataFrame, with_pseudonym: bool = False) -> pd.Series:
    """A 64-bit digest per row of its feature values (and pseudonym), vectorized: the same window under
    a fresh window id has the same digest."""
    columns = (["pseudonym"] if with_pseudonym else []) + list(FEATURE_NAMES)
    values = frame[columns].astype({c: np.float64 for c in FEATURE_NAMES})
    return pd.util.hash_pandas_object(values, index=False).map("{:016x}".format)


def features_frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=list(FEATURE_NAMES))


def check_reference(frame: pd.DataFrame, reference_windows: frozenset[str]) -> str | None:
    """Rows that are reference windows would inflate what candidates are scored on."""
    if not reference_windows:
        return None
    hits = int(feature_digests(frame).isin(reference_windows).sum())
    if hits:
        return f"reference: {hits} of {len(frame)} rows are windows of the reference set (the team's test devices, never shared)"
    return None


def dedup_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A window shared twice counts once: by window id, and by content per pseudonym (the same rows
    under fresh window ids)."""
    frame = frame.drop_duplicates("window_id")
    if frame.empty:
        return frame
    return frame[~feature_digests(frame, with_pseudonym=True).duplicated()]
