"""GX validation of one shared batch against just reading it with pyarrow (the floor): the ratio says
what the suite costs per batch."""

from __future__ import annotations

import io
import time

import pyarrow.parquet as pq

from tandem import task as tasks
from tandem.data.validation import validate_batch
from tandem.fleet import users as fleet
from tandem.fleet.sharing import batch_table, table_bytes


def main() -> None:
    task = tasks.resolve("har")
    user = fleet.synthetic_fleet(task, 1, windows_per_class=11, seed=0)[0]
    data = table_bytes(batch_table(user, list(range(64)), b"bench-key", "k1"))
    validate_batch(data, "warm-up", task)
    n = 10
    t0 = time.perf_counter()
    for _ in range(n):
        pq.read_table(io.BytesIO(data)).to_pandas()
    read = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(n):
        assert validate_batch(data, f"b{i}", task).ok
    validate = (time.perf_counter() - t0) / n
    print(f"64-row batch: validate/read time ratio {validate / read:.1f} ({validate * 1e3:.0f} ms vs {read * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
