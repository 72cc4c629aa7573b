"""Shared-batch builders for tests: good batches through the real sharing code, bad ones crafted."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from tandem.fleet.sharing import batch_table, table_bytes
from tandem.fleet.users import UserData


def good_table(user: UserData, n: int = 8, key: bytes = b"k") -> pa.Table:
    import numpy as np

    return batch_table(user, np.arange(min(n, len(user))), key, "k1")


def replace_column(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, pa.array(values))


def bad_batches(user: UserData) -> dict[str, bytes]:
    """One batch for each way a batch can be bad, keyed by what is wrong with it."""
    table = good_table(user)
    n = table.num_rows
    full = table_bytes(table)
    sink = io.BytesIO()
    pq.write_table(replace_column(table, "gravity_x_mean", [str(v) for v in table.column("gravity_x_mean").to_pylist()]), sink)
    return {
        "truncated": full[: len(full) // 2],
        "wrong_type": sink.getvalue(),
        "raw_email": table_bytes(replace_column(table, "pseudonym", ["jane.doe@example.com"] * n)),
        "bad_label": table_bytes(replace_column(table, "label", ["flying"] * n)),
    }
