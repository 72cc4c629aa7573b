"""`tandem ingest` at fleet scale, on the local store and on moto's S3 server over HTTP.

Three figures, each a ratio against a baseline measured in this same process (times alone depend on
the machine and on who else is using it):

1. 1M rows in 200 batches (2 of them bad): ingest time / one pyarrow read of the same files.
2. 10,000 batches of 64 rows: ingest time (target: <= 60 s on 2 cores); the batch-by-batch path of
   before, measured on 20 batches, extrapolated for comparison.
3. One new batch after those 10,000: ingest time / one batch into an empty store (median of 3 each).
   The 10,000 are spread over 20 past upload days (closed after ingest); the case of all 10,000
   in today's still-open day is reported beside it.

Writes bench/results.json and prints the table. Usage: python bench/bench_ingest.py [--quick]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tandem import pipeline
from tandem import task as tasks
from tandem.data import bulk_ingest, landing
from tandem.data.store import LocalStore
from tandem.data.validation import validate_batch
from tandem.fleet import users as fleet
from tandem.fleet.sharing import batch_table, table_bytes
from tandem.settings import Settings

OUT = Path(__file__).resolve().parent / "results.json"
for _var, _value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_var, _value)  # moto takes any credentials


# --- data ------------------------------------------------------------------------------------------

def _base(rows: int) -> pa.Table:
    user = fleet.synthetic_fleet(tasks.resolve("har"), 1, windows_per_class=rows // 6 + 1, seed=0)[0]
    return batch_table(user, np.arange(rows), b"bench-key", "k1")


def _hexes(seed: str, n: int, width: int) -> list[str]:
    return [hashlib.sha256(f"{seed}|{j}".encode()).hexdigest()[:width] for j in range(n)]


def make_batch(base: pa.Table, i: int) -> bytes:
    """Batch i: the base rows under another user's pseudonym, with window ids of its own."""
    n = base.num_rows
    t = base.set_column(0, base.schema.field(0), pa.array([hashlib.sha256(f"user{i % 997}".encode()).hexdigest()] * n))
    t = t.set_column(2, base.schema.field(2), pa.array(_hexes(f"b{i}", n, 32)))
    return table_bytes(t)


def make_bad(base: pa.Table, i: int, what: str) -> bytes:
    t = pq.read_table(io.BytesIO(make_batch(base, i)))
    column = "label" if what == "label" else "gravity_z_max"
    values = t.column(column).to_pylist()
    values[3] = "flying" if what == "label" else 99.0
    return table_bytes(t.set_column(t.schema.get_field_index(column), t.schema.field(column), pa.array(values, t.schema.field(column).type)))


def upload(store, items: list[tuple[str, bytes]]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: store.put(kv[0], kv[1]), items))


# --- stores ----------------------------------------------------------------------------------------

class Moto:
    """moto's S3 server in its own process (so its HTTP handling does not share this one's GIL)."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)

    def bucket(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=self.url).create_bucket(Bucket=name)
        return name

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Backend:
    def __init__(self, kind: str, moto: Moto | None = None):
        self.kind, self.moto = kind, moto
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tandem-bench-{kind}-"))

    def fresh(self) -> pipeline.Context:
        if self.kind == "local":
            url = str(self.tmp / uuid.uuid4().hex[:8])
            return pipeline.Context(Settings(home=self.tmp, store=url))
        return pipeline.Context(Settings(home=self.tmp, store=f"s3://{self.moto.bucket()}/tandem",
                                         s3_endpoint_url=self.moto.url))

    def read_all(self, ctx: pipeline.Context, keys: list[str]) -> pa.Table:
        """The baseline: one pyarrow read of the batch files (pyarrow's multi-file, multi-threaded read)."""
        store = ctx.store
        if isinstance(store, LocalStore):
            return pq.read_table([str(store.root / k) for k in keys])
        fs = pafs.S3FileSystem(endpoint_override=self.moto.url, scheme="http", access_key="bench",
                               secret_key="bench", region="us-east-1")
        return pq.read_table([f"{store.bucket}/{store.prefix}/{k}" for k in keys], filesystem=fs)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --- scenarios ---------------------------------------------------------------------------------------

def million_rows(backend: Backend, batches: int, rows: int) -> dict:
    base = _base(rows)
    ctx = backend.fresh()
    day = landing.upload_day()
    items = [(landing.upload_key(f"dev{i % 50:03d}", f"m{i:05d}", ".parquet", day), make_batch(base, i)) for i in range(batches - 2)]
    items += [(landing.upload_key("dev-bad", "bad-label", ".parquet", day), make_bad(base, batches, "label")),
              (landing.upload_key("dev-bad", "bad-range", ".parquet", day), make_bad(base, batches + 1, "range"))]
    upload(ctx.store, items)
    keys = [k for k, _ in items]
    read_s, table = timed(lambda: backend.read_all(ctx, keys))
    ingest_s, summary = timed(lambda: pipeline.ingest_new(ctx))
    assert summary["accepted"] == batches - 2 and summary["quarantined"] == 2, summary
    reasons = {PurePosixPath(key).stem: why for key, why in summary["quarantine_reasons"].items()}  # keyed by upload key
    assert set(reasons) == {"bad-label", "bad-range"}, reasons
    return {"rows": table.num_rows, "batches": batches, "read_s": read_s, "ingest_s": ingest_s,
            "ratio": ingest_s / read_s, "target_ratio": 3.0, "accepted": summary["accepted"],
            "quarantined": summary["quarantined"], "reasons": reasons}


def per_batch_path(n: int = 20) -> float:
    """Seconds per 64-row batch on the batch-by-batch path of before (one GX call per batch)."""
    base = _base(64)
    datas = [make_batch(base, 10_000_000 + i) for i in range(n + 1)]
    validate_batch(datas[0], "warm", tasks.resolve("har"))
    t, _ = timed(lambda: [validate_batch(d, f"b{i}", tasks.resolve("har")) for i, d in enumerate(datas[1:])])
    return t / n


def one_batch(ctx: pipeline.Context, base: pa.Table, i: int) -> float:
    ctx.store.put(landing.upload_key("dev-new", f"one{i}", ".parquet"), make_batch(base, 20_000_000 + i))
    t, summary = timed(lambda: pipeline.ingest_new(ctx))
    assert summary["new_batches"] == 1 and summary["accepted"] == 1, summary
    return t


def fleet_scale(backend: Backend, batches: int, days: int, repeat: int = 3, today_variant: bool = True) -> dict:
    base = _base(64)
    # one new batch into an empty store (the denominator), warm: GX runtime and the table code loaded
    one_batch(backend.fresh(), base, 999)
    empty = [one_batch(backend.fresh(), base, k) for k in range(repeat)]

    today = datetime.now(timezone.utc)
    ctx = backend.fresh()
    items = [(landing.upload_key(f"dev{i % 500:03d}", f"f{i:06d}", ".parquet",
                                 landing.upload_day(today - timedelta(days=6 + i % days))), make_batch(base, i))
             for i in range(batches)]
    upload(ctx.store, items)
    ingest_s, summary = timed(lambda: pipeline.ingest_new(ctx))
    assert summary["accepted"] == batches, summary
    after = [one_batch(ctx, base, 100 + k) for k in range(repeat)]

    after_today = [float("nan")]
    if today_variant:  # the same, but every one of them uploaded today (one open partition to list)
        ctx_today = backend.fresh()
        upload(ctx_today.store, [(landing.upload_key(f"dev{i % 500:03d}", f"t{i:06d}", ".parquet"), d)
                                 for i, (_, d) in enumerate(items)])
        pipeline.ingest_new(ctx_today)
        after_today = [one_batch(ctx_today, base, 200 + k) for k in range(repeat)]
    return {"batches": batches, "rows_per_batch": 64, "ingest_s": ingest_s, "target_s": 60.0,
            "closed_partitions": len(summary["closed_partitions"]), "table_version": summary["table_version"],
            "one_into_empty_s": statistics.median(empty), "one_after_s": statistics.median(after),
            "one_after_ratio": statistics.median(after) / statistics.median(empty),
            "one_after_today_s": statistics.median(after_today),
            "one_after_today_ratio": statistics.median(after_today) / statistics.median(empty),
            "target_ratio": 1.5, "samples": {"empty": empty, "after": after, "after_today": after_today}}


def main() -> None:
    """Options: --quick (smaller), --only local|s3 (one backend; results merge into results.json, so the
    two can run as separate processes), --no-today (skip the all-uploaded-today variant)."""
    args = sys.argv[1:]
    quick = "--quick" in args
    kinds = [args[args.index("--only") + 1]] if "--only" in args else ["local", "s3"]
    big = (40, 5_000) if quick else (200, 5_000)
    many, days = (1_000, 5) if quick else (10_000, 20)
    results = {}
    run = {"machine": {"cpus": len(os.sched_getaffinity(0)), "load_avg_at_start": os.getloadavg(),
                       "note": "shared machine: other engineers' jobs ran at the same time"},
           "workers": bulk_ingest.default_workers(), "quick": quick}
    t_cold, _ = timed(lambda: bulk_ingest.run_chunks(Settings(home=Path(tempfile.gettempdir())), [[], []]))
    run["process_pool_cold_start_s"] = t_cold
    old = per_batch_path()
    run["before_per_batch_s"] = old
    run["before_10000_batches_extrapolated_s"] = old * 10_000
    moto = Moto() if "s3" in kinds else None
    try:
        for kind in kinds:
            backend = Backend(kind, moto)
            try:
                print(f"[{kind}] {big[0] * big[1]:,} rows ...", flush=True)
                run[f"{kind}_million"] = million_rows(backend, *big)
                print(json.dumps(run[f"{kind}_million"], default=str), flush=True)  # in the log as soon as measured
                print(f"[{kind}] {many} batches ...", flush=True)
                run[f"{kind}_fleet"] = fleet_scale(backend, many, days, today_variant="--no-today" not in args)
                print(json.dumps(run[f"{kind}_fleet"], default=str), flush=True)
            finally:
                backend.cleanup()
            run["load_avg_at_end"] = os.getloadavg()
            if "--only" in args and OUT.exists():  # the other backend's process may have written meanwhile
                results = json.loads(OUT.read_text())
            results.setdefault("runs", {})[kind] = run
            OUT.write_text(json.dumps(results, indent=2, default=str))
    finally:
        if moto:
            moto.stop()
    if all(k in results.get("runs", {}) for k in ("local", "s3")):
        print_table(results)


def print_table(results: dict) -> None:
    local, s3 = results["runs"]["local"], results["runs"]["s3"]

    def row(name, a, b, target):
        print(f"| {name:<58} | {a:>16} | {b:>16} | {target:>10} |")

    def fmt(x, spec):
        return format(x, spec) if x == x else "-"  # NaN: not measured

    for kind, r in (("local", local), ("S3", s3)):
        print(f"{kind}: {r['machine']['cpus']} cores shared with other jobs, {r['workers']} worker processes, "
              f"load average {r['machine']['load_avg_at_start'][0]:.1f} at start, {r['load_avg_at_end'][0]:.1f} at end; "
              f"process pool cold start {r['process_pool_cold_start_s']:.1f} s (not in the figures)")
    row("figure", "local", "S3 (moto, HTTP)", "target")
    print("|" + "-" * 60 + "|" + "-" * 18 + "|" + "-" * 18 + "|" + "-" * 12 + "|")
    lm, sm = local["local_million"], s3["s3_million"]
    row(f"{lm['rows']:,} rows / {lm['batches']} batches: ingest / pyarrow read", f"{lm['ratio']:.2f}x", f"{sm['ratio']:.2f}x", "<= 3x")
    row("   ingest s (read s)", f"{lm['ingest_s']:.1f} ({lm['read_s']:.1f})", f"{sm['ingest_s']:.1f} ({sm['read_s']:.1f})", "")
    lf, sf = local["local_fleet"], s3["s3_fleet"]
    row(f"{lf['batches']:,} batches x 64 rows: ingest s", f"{lf['ingest_s']:.1f}", f"{sf['ingest_s']:.1f}", "<= 60 s")
    row("   batch-by-batch before (20 measured, extrapolated) s",
        f"{local['before_per_batch_s'] * lf['batches']:.0f}", f"{s3['before_per_batch_s'] * sf['batches']:.0f}", "")
    row("one new batch after them / one into an empty store", f"{lf['one_after_ratio']:.2f}x", f"{sf['one_after_ratio']:.2f}x", "<= 1.5x")
    row("   s (into empty s)", f"{lf['one_after_s']:.2f} ({lf['one_into_empty_s']:.2f})",
        f"{sf['one_after_s']:.2f} ({sf['one_into_empty_s']:.2f})", "")
    row("   same, all of them uploaded today (open day)", fmt(lf["one_after_today_ratio"], ".2f") + "x",
        fmt(sf["one_after_today_ratio"], ".2f") + "x", "")


if __name__ == "__main__":
    main()
