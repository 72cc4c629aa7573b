"""Who a batch says it comes from, checked before its rows enter: one pseudonym per batch, capture times
no later than the upload plus a stated clock skew, window ids owned by the pseudonym that first sent
them (another pseudonym reusing them, e.g. with flipped labels, is label-flip poisoning), and no copy
of a revoked batch's bytes. Vectorized over a chunk's batches with pyarrow: no per-row Python."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tandem.data import table as accepted
from tandem.data.store import Store
from tandem.data.validation.shapes import EMITTED_SHAPES


def pseudonyms_breach(days: dict[str, int]) -> str | None:
    """A batch is one device's upload: exactly one pseudonym (`days`: its `pseudonym_days`)."""
    count = len({pday.split("/")[0] for pday in days})
    if count > 1:
        return f"identity: the batch holds {count} pseudonyms; a batch holds exactly one (one device's upload)"
    return None


def skew_breach(captured_max: datetime, uploaded_at: datetime | None, skew_seconds: int) -> str | None:
    """Capture times after the upload (the object's time in the store, else now) plus the allowed skew."""
    upload = uploaded_at or datetime.now(timezone.utc)
    late = captured_max - upload
    if late > timedelta(seconds=skew_seconds):
        return (f"identity: captured {int(late.total_seconds())} s after its upload, more than the {skew_seconds} s "
                f"clock skew allowed (TANDEM_MAX_CLOCK_SKEW_SECONDS)")
    return None


def max_captured(table: pa.Table) -> datetime:
    return pc.max(table.column("captured_at")).as_py()


_held: dict[tuple[str, int], pa.Table] = {}  # one table version's owners, kept while the version is current


def table_owners(store: Store, window_ids: pa.Array) -> pa.Table:
    """(window_id, pseudonym) of the table's rows whose window id is among `window_ids`. The two columns
    of the current version are read once and kept (batches judged one by one, e.g. sealed ones, would
    otherwise each scan the table)."""
    dt = accepted.open_table(store)
    if dt is None or not len(window_ids):
        return pa.table({"window_id": pa.array([], pa.string()), "pseudonym": pa.array([], pa.string())})
    key = (store.url, dt.version())
    if key not in _held:
        _held.clear()
        _held[key] = dt.to_pyarrow_table(columns=["window_id", "pseudonym"])
    held = _held[key]
    return held.filter(pc.is_in(held["window_id"], value_set=window_ids))


def foreign_window_ids(store: Store, tables: list[pa.Table]) -> list[str | None]:
    """Per batch (in order), why it reuses window ids another pseudonym sent first, or None. The table's
    owners come first, then earlier batches of `tables`."""
    if not tables:
        return []
    owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    ids = pa.chunked_array([c for t in tables for c in t.column("window_id").cast(pa.string()).chunks], pa.string())
    pseudonyms = pa.chunked_array([c for t in tables for c in t.column("pseudonym").cast(pa.string()).chunks], pa.string())
    held = table_owners(store, pc.unique(ids) if ids.num_chunks else pa.array([], pa.string()))
    rows = pa.table({"window_id": ids, "pseudonym": pseudonyms, "order": pa.array(owner + 1, pa.int64())})
    held = pa.table({"window_id": held.column("window_id"), "pseudonym": held.column("pseudonym"),
                     "order": pa.array(np.zeros(held.num_rows, np.int64))})
    everyone = pa.concat_tables([held, rows])
    first = everyone.group_by("window_id", use_threads=False).aggregate([("order", "min")])
    owners = everyone.join(first, ["window_id"]).filter(
        pc.equal(pc.field("order"), pc.field("order_min"))).group_by("window_id").aggregate([("pseudonym", "min")])
    joined = rows.join(owners, "window_id")
    bad = joined.filter(pc.not_equal(joined["pseudonym"], joined["pseudonym_min"]))
    reasons: list[str | None] = [None] * len(tables)
    if bad.num_rows:
        counts = bad.group_by("order").aggregate([([], "count_all")])
        for order, n in zip(counts.column("order").to_pylist(), counts.column("count_all").to_pylist()):
            reasons[order - 1] = (f"identity: {n} of {tables[order - 1].num_rows} window ids were sent first by another "
                                  f"pseudonym (window ids belong to the device that first sent them)")
    return reasons


def revoked_copy(digest: str, revoked: frozenset[str]) -> str | None:
    if digest in revoked:
        return "revoked: the same bytes as a withdrawn batch (a copy is withdrawn with it)"
    return None


def text_shape_breach(table: pa.Table) -> str | None:
    """A free-text column holding a value Tandem never emits there (`EMITTED_SHAPES`); the reason names
    the column and the shape, never the value. One regex pass over each column's distinct values."""
    for column, shape in EMITTED_SHAPES.items():
        if column not in table.column_names:
            continue
        values = pc.unique(table.column(column).cast(pa.string()))
        ok = pc.match_substring_regex(values, shape)
        bad = len(values) - pc.sum(pc.fill_null(ok, False).cast(pa.int64())).as_py() if len(values) else 0
        if bad:
            return (f"shape: {column} holds {bad} value(s) not shaped like what Tandem emits there "
                    f"(tandem.data.validation.shapes.EMITTED_SHAPES); values not quoted")
    return None
