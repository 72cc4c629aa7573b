"""Limits on what one batch and one pseudonym may bring, and row digests for deduplication.

One device must not be able to dominate the training data (a 2M-row batch), exhaust the validator (a
file of 10,000 row groups), replay the same rows under fresh window ids, or smuggle in the
evaluation users' own windows. Every breach quarantines the batch with the numbers involved.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tandem.contract.features import FEATURE_NAMES
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
    """Accepted rows and batches per (pseudonym, capture day) so far, from the ledger."""

    rows: Counter = field(default_factory=Counter)
    batches: Counter = field(default_factory=Counter)

    @classmethod
    def from_entries(cls, entries: list[dict]) -> "Usage":
        usage = cls()
        for entry in entries:
            usage.add(entry)
        return usage

    def add(self, entry: dict) -> None:
        """Count an accepted batch (so later batches of the same run see it)."""
        for pday, rows in (entry.get("pseudonym_days") or {}).items():
            self.rows[pday] += rows
            self.batches[pday] += 1


def check_file(data: bytes, limits: Limits) -> str | None:
    """Before the batch is parsed: its size, and (from the parquet footer only) rows and row groups."""
    if len(data) > limits.max_batch_bytes:
        return f"limit: {len(data)} bytes is more than the {limits.max_batch_bytes} a batch may have"
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception:
        return None  # not parquet: the validator says so in its own words
    if meta.num_row_groups > limits.max_row_groups:
        return f"limit: {meta.num_row_groups} row groups is more than the {limits.max_row_groups} a batch may have"
    if meta.num_rows > limits.max_batch_rows:
        return f"limit: {meta.num_rows} rows is more than the {limits.max_batch_rows} a batch may have"
    return None


def pseudonym_days(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per ``<pseudonym>/<capture day>`` (pseudonyms only: never a raw id)."""
    day = pd.to_datetime(frame["captured_at"], utc=True).dt.strftime("%Y-%m-%d")
    counts = (frame["pseudonym"].astype(str) + "/" + day).value_counts()
    return {k: int(v) for k, v in counts.items()}


def check_usage(frame: pd.DataFrame, usage: Usage, limits: Limits) -> str | None:
    for pday, rows in sorted(pseudonym_days(frame).items()):
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
    """A digest per row of its feature values (and pseudonym): the same window under a fresh window
    id has the same digest."""
    values = np.ascontiguousarray(frame[list(FEATURE_NAMES)].to_numpy(np.float64))
    prefix = frame["pseudonym"].astype(str).tolist() if with_pseudonym else [""] * len(frame)
    return pd.Series([hashlib.sha256(p.encode() + row.tobytes()).hexdigest()[:32] for p, row in zip(prefix, values)],
                     index=frame.index)


def features_frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=list(FEATURE_NAMES))


def check_holdout(frame: pd.DataFrame, holdout: frozenset[str]) -> str | None:
    """Rows that are the evaluation users' own windows would inflate the reported accuracy."""
    if not holdout:
        return None
    hits = int(feature_digests(frame).isin(holdout).sum())
    if hits:
        return f"holdout: {hits} of {len(frame)} rows are windows of the evaluation users, who never share"
    return None


def dedup_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A window shared twice counts once: by window id, and by content per pseudonym (the same rows
    under fresh window ids)."""
    frame = frame.drop_duplicates("window_id")
    if frame.empty:
        return frame
    return frame[~feature_digests(frame, with_pseudonym=True).duplicated()]
