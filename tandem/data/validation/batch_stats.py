"""Column-wise expectations judged on per-batch statistics instead of on every row (what TFDV does:
validate the statistics, not the data).

A batch's values of a column are all non-null iff it has no null, and all within [lo, hi] iff its
minimum and maximum are. So for `expect_column_values_to_not_be_null` and
`expect_column_values_to_be_between` (no ``mostly``, no row condition) GX validating a frame of two
rows per batch — the batch's minimum and maximum of each column, both null where the batch has a
null or NaN — fails for exactly the batches it would fail for on their rows. With the suites' 157
range and 167 not-null expectations this is most of the bulk pass's work on rows.
Any other expectation, or one a team edited to carry other arguments, stays row-wise.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EXACT_KWARGS = {
    "expect_column_values_to_not_be_null": {"column"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max"},
}


def _orderable(pa_type) -> bool:
    return pa.types.is_integer(pa_type) or pa.types.is_floating(pa_type) or pa.types.is_timestamp(pa_type)


def judged_on_statistics(config, schema: pa.Schema) -> bool:
    """Whether an expectation's verdict on a batch equals its verdict on the batch's min/max rows."""
    allowed = _EXACT_KWARGS.get(config.type)
    if allowed is None or not set(config.kwargs) <= allowed:
        return False
    column = config.kwargs.get("column")
    if column not in schema.names:
        return False
    return config.type == "expect_column_values_to_not_be_null" or _orderable(schema.field(column).type)


def _min_max(column: pa.ChunkedArray, starts: np.ndarray) -> pa.Array:
    """Each batch's minimum, then each batch's maximum (rows of a batch are contiguous from its start);
    null for a batch with a null or NaN."""
    missing = np.logical_or.reduceat(pc.is_null(column, nan_is_null=True).to_numpy(zero_copy_only=False), starts)
    if not _orderable(column.type):  # not-null only: whether a value is missing is all that counts
        values = np.zeros(2 * len(starts), dtype=np.int8)
        return pa.array(values, mask=np.concatenate([missing, missing]))
    values = column.fill_null(pa.scalar(0, column.type)).to_numpy()  # the filled rows' batches are null anyway
    both = np.concatenate([np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)])
    return pa.array(both, type=column.type, mask=np.concatenate([missing, missing]))


def min_max_frame(table: pa.Table, owner: np.ndarray, columns: list[str]):
    """A pandas frame with two rows per batch (its minimum, then its maximum, of each column; null
    where the batch has any null or NaN in the column) and the batch index of each row. A batch's
    rows must be contiguous in `table` (`owner` non-decreasing)."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    frame = pa.table({name: _min_max(table.column(name), starts) for name in columns}).to_pandas()
    batches = owner[starts]
    return frame, np.concatenate([batches, batches])
