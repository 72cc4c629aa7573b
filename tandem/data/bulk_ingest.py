"""Ingest in chunks: each chunk of new batches is fetched, validated in one columnar pass
(`tandem.data.validation.bulk`), its bad batches judged alone and quarantined as before, its good
rows appended to the table in one commit (`tandem.data.table`), and only then ledgered. Chunks are
independent: they run in parallel processes (or Dask workers) with no lock between them.

Order of writes, and why it is crash-safe at every point:
  quarantine copy -> ledger entry          (bad batch: a crash in between just judges it again)
  table commit -> ledger entries -> cursor (good batches: a crash after the commit leaves batches the
                                            rerun finds committed by their Delta transaction, so
                                            it writes their ledger entries without appending again)
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem.contract.schema import BATCH_SCHEMA
from tandem.data import ingest, landing
from tandem.data import table as accepted_table
from tandem.data.ingest import BatchRef
from tandem.data.snapshot import record_policies
from tandem.data.store import NotFound, Store, store_from_settings
from tandem.data.validation import BatchVerdict
from tandem.data.validation.bulk import Candidate, structural, validate_many
from tandem.privacy import sealing
from tandem.settings import Settings

MAX_CHUNK = 250  # batches per chunk: one GX pass and one table commit each
MIN_CHUNK = 32  # below this a chunk costs more in GX and commit overhead than it saves
FETCH_THREADS = 16  # object GETs are latency-bound (S3)
PARQUET_TRANSPORT = {"stored_format": "parquet", "aead": "none", "key_id": "none"}


def plan_chunks(refs: list[BatchRef], workers: int = 2) -> list[list[BatchRef]]:
    """Cut the new batches into chunks: a few per worker (for balance), never more than MAX_CHUNK."""
    if not refs:
        return []
    size = max(MIN_CHUNK, min(MAX_CHUNK, math.ceil(len(refs) / (workers * 4))))
    return [refs[i:i + size] for i in range(0, len(refs), size)]


def _fetch(store: Store, refs: list[BatchRef]) -> list[bytes]:
    def get(ref: BatchRef) -> bytes:
        try:
            return store.get(ref.key)
        except NotFound:
            raise RuntimeError(f"batch {ref.batch_id} vanished from {ref.key}: the landing zone must not lose data") from None

    with ThreadPoolExecutor(min(FETCH_THREADS, len(refs))) as pool:
        return list(pool.map(get, refs))


def _facts(table: pa.Table) -> dict:
    low, high = pc.min_max(table.column("captured_at")).values()
    return {"policy": sorted(pc.unique(table.column("policy")).to_pylist()),
            "captured_from": low.as_py().isoformat(), "captured_to": high.as_py().isoformat()}


def _rows(batch_id: str, table: pa.Table) -> pa.Table:
    table = table.select(list(BATCH_SCHEMA.names)).replace_schema_metadata(None)
    try:
        table = table.cast(BATCH_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = table.cast(BATCH_SCHEMA, safe=False)  # a type GX accepts (e.g. us timestamps) that the schema narrows
    return table.append_column(accepted_table.BATCH_ID, pa.array([batch_id] * table.num_rows, pa.string()))


def ingest_chunk(store: Store, refs: list[BatchRef], keyring: dict[str, bytes], suites_dir: Path | None = None,
                 run_id: str | None = None) -> list[dict]:
    """Judge, append and ledger one chunk. Returns the ledger entries, each with ``"new"``: whether this
    call recorded it (False: another run had, e.g. before a crash or while racing)."""
    if not refs:
        return []
    datas = _fetch(store, refs)
    by_id = {r.batch_id: (r, d) for r, d in zip(refs, datas)}
    candidates: list[Candidate] = []
    alone: list[str] = []
    for ref, data in zip(refs, datas):
        found = None if sealing.is_sealed(data) else structural(data, ref.batch_id)
        (candidates.append(found) if found else alone.append(ref.batch_id))
    outcome = validate_many(candidates, suites_dir)
    alone += outcome.failed
    tables = {c.batch_id: c.table for c in candidates if c.batch_id in outcome.passed}
    good = {b: (reason, PARQUET_TRANSPORT) for b, reason in outcome.passed.items()}

    results: dict[str, tuple[dict, bool]] = {}
    for batch_id in alone:  # the per-batch judge, exactly as before, for its reason and GX result
        ref, data = by_id[batch_id]
        verdict, transport = ingest._judge(data, batch_id, keyring, suites_dir)
        if verdict.ok:
            plain, _ = ingest.open_batch(data, keyring)
            tables[batch_id] = pq.read_table(io.BytesIO(plain))
            good[batch_id] = (verdict.reason, transport)
        else:
            results[batch_id] = ingest.record(store, ref, data, verdict, transport, run_id)

    if good:
        ids = [r.batch_id for r in refs if r.batch_id in good]
        record_policies(store, [tables[b] for b in ids])
        rows = pa.concat_tables([_rows(b, tables[b]) for b in ids])
        version, _ = accepted_table.append(store, rows, ids, run_id)
        for batch_id in ids:
            ref, data = by_id[batch_id]
            reason, transport = good[batch_id]
            verdict = BatchVerdict(True, reason, {}, tables[batch_id].num_rows)
            facts = {**_facts(tables[batch_id]), "table_version": version}
            results[batch_id] = ingest.record(store, ref, data, verdict, transport, run_id, facts)

    by_partition: dict[str, list[str]] = {}
    for ref in refs:
        by_partition.setdefault(landing.partition_of(ref.key), []).append(ref.batch_id)
    for partition, ids in by_partition.items():
        landing.write_cursor(store, partition, ids)
    return [{**results[r.batch_id][0], "new": results[r.batch_id][1]} for r in refs]


def run_chunk(settings: Settings, refs: list[BatchRef], run_id: str | None = None) -> list[dict]:
    """One chunk in any process: the store and keys are rebuilt from the settings there."""
    return ingest_chunk(store_from_settings(settings), refs, sealing.keyring(settings), settings.expectations_dir, run_id)


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def run_chunks(settings: Settings, chunks: list[list[BatchRef]], run_id: str | None = None,
               workers: int | None = None) -> list[dict]:
    """Every chunk, in parallel processes (one chunk runs in this process). A forkserver starts the
    workers: forking a process that runs threads (Prefect's, boto3's) can deadlock the child."""
    workers = min(workers or default_workers(), len(chunks))
    if workers <= 1:
        return [e for chunk in chunks for e in run_chunk(settings, chunk, run_id)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tandem.data.bulk_ingest"])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(run_chunk, settings, chunk, run_id) for chunk in chunks]
        return [e for f in futures for e in f.result()]


def settle(store: Store) -> list[str]:
    """After the chunks: compact the cursors and close the open days old enough that are done."""
    return landing.settle(store, landing.open_partitions(store), lambda k: ingest.batch_ref(k).batch_id)
