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
    max_batch_decoded_bytes: int = 256 * 2**20
    max_clock_skew_seconds: int = 600

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
    decoded = decoded_bytes(meta)
    if decoded > limits.max_batch_decoded_bytes:
        return (f"limit: would decode to about {decoded} bytes (parquet footer), more than the "
                f"{limits.max_batch_decoded_bytes} a batch may (TANDEM_MAX_BATCH_DECODED_BYTES); it was not read")
    return None


def decoded_bytes(meta: pq.FileMetaData) -> int:
    """An upper bound of what reading the file costs in memory, from the footer alone: each column
    chunk's uncompressed size, and for a dictionary-encoded chunk its values times its whole
    uncompressed size (a tiny file can repeat one huge dictionary entry on every row)."""
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            size = max(int(chunk.total_uncompressed_size), 0)
            total += size * max(int(chunk.num_values), 1) if chunk.has_dictionary_page else size
    return total


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


@dataclass(frozen=True)
class ReferenceKeys:
    """What marks a row as the reference set's (the team's test devices, never shared). ``values``
    mode: quantized feature digests, where feature vectors are distinctive (`false_match_rate`: the
    share of accepted rows that match, measured when the keys were made). ``identity`` mode, where
    genuine rows repeat (a low-dimensional tabular task): only the test devices' pseudonyms and
    window ids. Both modes check the identity keys when the reference set has them."""

    digests: frozenset[str] = frozenset()
    pseudonyms: frozenset[str] = frozenset()
    window_ids: frozenset[str] = frozenset()
    mode: str = "values"
    false_match_rate: float | None = None
    measured_rows: int = 0
    why: str = ""
    feature_names: tuple[str, ...] = ()  # the task's features the digests are of

    def __bool__(self) -> bool:
        return bool(self.pseudonyms or self.window_ids or (self.mode == "values" and self.digests))

    def describe(self) -> dict:
        return {"mode": self.mode, "false_match_rate": self.false_match_rate, "measured_on_rows": self.measured_rows,
                "reference_rows": len(self.digests), "why": self.why}


def _keys(reference: ReferenceKeys | None) -> ReferenceKeys:
    return reference if reference is not None else ReferenceKeys()


def admission_columns(reference_windows) -> list[str]:
    """The columns `check_admission` reads (the features only when reference windows are compared by value)."""
    keys = _keys(reference_windows)
    by_value = keys.mode == "values" and keys.digests
    return ["pseudonym", "captured_at", *(["window_id"] if keys.pseudonyms or keys.window_ids else []),
            *(keys.feature_names if by_value else ())]


def check_admission(days: dict[str, int], frame: pd.DataFrame | None, usage: Usage, limits: Limits,
                    reference_windows) -> str | None:
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


QUANTUM_DECIMALS = 6  # float noise below 1e-6 (a 1e-12 shift, a float32 round trip of small values) digests alike


def quantized(frame: pd.DataFrame, feature_names) -> np.ndarray:
    """The features rounded to QUANTUM_DECIMALS (and -0.0 made 0.0): what content identity compares."""
    return np.round(frame[list(feature_names)].to_numpy(np.float64), QUANTUM_DECIMALS) + 0.0


def feature_digests(frame: pd.DataFrame, feature_names, with_pseudonym: bool = False) -> pd.Series:
    """A 64-bit digest per row of its quantized feature values (and pseudonym), vectorized: the same
    window under a fresh window id, or shifted by float noise, has the same digest."""
    values = pd.DataFrame(quantized(frame, feature_names), columns=list(feature_names), index=frame.index)
    if with_pseudonym:
        values.insert(0, "pseudonym", frame["pseudonym"].astype(str).to_numpy())
    return pd.util.hash_pandas_object(values, index=False).map("{:016x}".format)


def features_frame(values: np.ndarray, feature_names) -> pd.DataFrame:
    return pd.DataFrame(values, columns=list(feature_names))


def check_reference(frame: pd.DataFrame | None, reference_windows) -> str | None:
    """Rows that are reference windows would inflate what candidates are scored on."""
    keys = _keys(reference_windows)
    if not keys or frame is None:
        return None
    hit = np.zeros(len(frame), dtype=bool)
    if keys.pseudonyms:
        hit |= frame["pseudonym"].isin(keys.pseudonyms).to_numpy()
    if keys.window_ids and "window_id" in frame:
        hit |= frame["window_id"].isin(keys.window_ids).to_numpy()
    if keys.mode == "values" and keys.digests:
        hit |= feature_digests(frame, keys.feature_names).isin(keys.digests).to_numpy()
    hits = int(hit.sum())
    if hits:
        return f"reference: {hits} of {len(frame)} rows are windows of the reference set (the team's test devices, never shared)"
    return None


HEADROOM = 100  # distinctive: the feature columns' distinct values allow 100x more vectors than there are rows


def distinctive(frame: pd.DataFrame, feature_names) -> bool:
    """Whether rows are told apart by their content: the product of each feature column's number of
    distinct (quantized) values exceeds the rows HEADROOM times over. HAR's 157 continuous features
    do by far; a low-dimensional tabular task (a day 0-9, a count) repeats genuinely, and content
    identity would throw real rows away there. Extra rows only lower the product's share, so a replay
    cannot make a distinctive task look repetitive without many times its rows."""
    if frame.empty:
        return True
    frame = frame.sample(n=min(len(frame), 20_000), random_state=0)  # a sample judges it (1M rows x 157 sorts would not do)
    values = quantized(frame, feature_names)
    distinct = [len(np.unique(values[:, j])) for j in range(values.shape[1])]
    return float(np.sum(np.log10(np.maximum(distinct, 1)))) >= np.log10(len(frame) * HEADROOM)


def dedup_rows(frame: pd.DataFrame, feature_names, report: dict | None = None) -> pd.DataFrame:
    """A window counts once per snapshot: by window id, and by content whoever sent it (the same rows
    under a new pseudonym and fresh window ids: a replay, a Sybil fleet). Content is compared only where
    feature vectors are distinctive (`distinctive`); else per window id alone. The first copy in
    `frame`'s order is kept; `report` (a dict) receives how many rows were dropped and from where."""
    before = len(frame)
    frame = frame.drop_duplicates("window_id")
    by_id = before - len(frame)
    if frame.empty:
        return frame
    digests = feature_digests(frame, feature_names)
    content = distinctive(frame, feature_names)
    dropped = digests.duplicated() if content else pd.Series(False, index=frame.index)
    if report is not None:
        report.update({"by_window_id": by_id, "by_content": int(dropped.sum()),
                       "content_identity": "across pseudonyms" if content else "off (feature vectors repeat genuinely)"})
        if dropped.any():
            first = pd.Series(frame.index, index=digests.to_numpy()).groupby(level=0).first()
            kept_at = first.reindex(digests[dropped].to_numpy()).to_numpy()
            pairs = pd.DataFrame({"kept_pseudonym": frame.loc[kept_at, "pseudonym"].str[:12].to_numpy(),
                                  "dropped_pseudonym": frame.loc[dropped, "pseudonym"].str[:12].to_numpy()})
            if "batch_id" in frame:
                pairs["dropped_batch"] = frame.loc[dropped, "batch_id"].to_numpy()
            sources = pairs.value_counts().reset_index(name="rows").head(100)
            report["sources"] = sources.to_dict("records")
    return frame[~dropped.to_numpy()]
