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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem import task as tasks
from tandem.data import identity, ingest, landing, run_guard
from tandem.data import table as accepted_table
from tandem.data.ingest import BatchRef
from tandem.data.limits import Limits, ReferenceKeys, Usage, check_file, pseudonym_days_of
from tandem.data.store import Store, store_from_settings
from tandem.data.validation import BatchVerdict
from tandem.data.validation.bulk import Candidate, structural, validate_many
from tandem.privacy import sealing
from tandem.settings import Settings
from tandem.task import Task

MAX_CHUNK = 5000  # batches per chunk (a task: one GX pass and one table commit per ROWS_PER_PASS rows)
MIN_CHUNK = 32  # below this a chunk costs more in GX and commit overhead than it saves
ROWS_PER_PASS = 500_000  # rows in one GX pass: GX's cost is mostly per pass, memory is per row
IO_THREADS = 16  # object GETs and PUTs are latency-bound (S3)
PARQUET_TRANSPORT = {"stored_format": "parquet", "aead": "none", "key_id": "none"}


def plan_chunks(refs: list[BatchRef], workers: int = 2) -> list[list[BatchRef]]:
    """Cut the new batches into chunks: one per worker when they fit (GX's cost is mostly per pass), never
    more than MAX_CHUNK batches, never fewer than MIN_CHUNK."""
    if not refs:
        return []
    size = max(MIN_CHUNK, min(MAX_CHUNK, math.ceil(len(refs) / workers)))
    return [refs[i:i + size] for i in range(0, len(refs), size)]


def _facts(table: pa.Table) -> dict:
    low, high = pc.min_max(table.column("captured_at")).values()
    return {"policy": sorted(pc.unique(table.column("policy")).to_pylist()),
            "captured_from": low.as_py().isoformat(), "captured_to": high.as_py().isoformat()}


@dataclass
class Judges:
    """What one chunk judges with: the task its batches must be of (its GX suites), the keys of sealed
    batches, the limits, what each pseudonym has brought per day (`tandem.data.limits.Usage`) and the
    reference set's windows."""

    task: Task
    keyring: dict[str, bytes] = field(default_factory=dict)
    suites_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    usage: Usage = field(default_factory=Usage)
    reference_windows: ReferenceKeys = field(default_factory=ReferenceKeys)
    revoked: frozenset[str] = frozenset()  # sha256 of withdrawn batches: their copies are quarantined


def _bulk_material(data: bytes | None, batch_id: str, limits: Limits, task: Task) -> Candidate | None:
    """The batch for the columnar pass, or None for the per-batch judge (never read, sealed, over a
    limit, not the plain schema, or anything unforeseen: the per-batch judge says why)."""
    if data is None or sealing.is_sealed(data):
        return None
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))  # the footer, parsed once for the limits and the read
        return None if check_file(data, limits, parquet) else structural(parquet, batch_id, task)
    except Exception:
        return None


def ingest_chunk(store: Store, refs: list[BatchRef], judges: Judges, run_id: str | None = None) -> list[dict]:
    """Judge, append and ledger one chunk. Returns the ledger entries, each with ``"new"``: whether this
    call recorded it (False: another run had, e.g. before a crash or while racing)."""
    if not refs:
        return []
    if judges.usage.store is None:
        judges.usage.store = store
    with ThreadPoolExecutor(min(IO_THREADS, len(refs))) as pool:  # GETs wait on the network, parquet decoding frees the GIL
        fetched = list(pool.map(lambda ref: ingest.fetch_with_meta(store, ref), refs))
        datas = [data for data, _ in fetched]
        metas = {ref.batch_id: meta for ref, (_, meta) in zip(refs, fetched)}
        found = list(pool.map(lambda rd: _bulk_material(rd[1], rd[0].batch_id, judges.limits, judges.task),
                              zip(refs, datas)))
        results: dict[str, tuple[dict, bool]] = {}
        for group in _passes(refs, found):
            results.update(_judge_and_commit(store, pool, [(refs[i], datas[i], found[i]) for i in group], judges, run_id,
                                             metas))
    by_partition: dict[str, list[str]] = {}
    for ref in refs:
        if results[ref.batch_id][0].get("retry"):
            continue  # maybe still being copied in: offered again, judged again once its bytes change
        by_partition.setdefault(landing.partition_of(ref.key), []).append(ref.batch_id)
    for partition, ids in by_partition.items():
        landing.write_cursor(store, partition, ids)
    return [{**results[r.batch_id][0], "new": results[r.batch_id][1]} for r in refs]


def _passes(refs: list[BatchRef], found: list[Candidate | None]) -> list[list[int]]:
    """Consecutive groups of the chunk with at most ROWS_PER_PASS rows: one GX pass and one commit each
    (bounds memory when batches are large; small batches make one group)."""
    groups, current, rows = [], [], 0
    for i, candidate in enumerate(found):
        n = candidate.table.num_rows if candidate else 0
        if current and rows + n > ROWS_PER_PASS:
            groups.append(current)
            current, rows = [], 0
        current.append(i)
        rows += n
    return groups + [current]


def _judge_and_commit(store: Store, pool: ThreadPoolExecutor,
                      group: list[tuple[BatchRef, bytes | None, Candidate | None]], judges: Judges,
                      run_id: str | None, metas: dict[str, dict] | None = None) -> dict:
    """One group: validated in bulk, the batches the bulk pass cannot take or failed judged alone (for
    their exact reason), then every validated batch admitted or refused by the same decision
    (`ingest.admission_breach`), in the group's order; the admitted ones committed, then ledgered."""
    metas = metas or {}
    by_id = {ref.batch_id: (ref, data) for ref, data, _ in group}
    candidates = [c for _, _, c in group if c is not None]
    outcome = validate_many(candidates, judges.task, judges.suites_dir)
    alone = [ref.batch_id for ref, _, c in group if c is None] + outcome.failed
    tables = {c.batch_id: c.table for c in candidates if c.batch_id in outcome.passed}
    valid = {b: (reason, PARQUET_TRANSPORT) for b, reason in outcome.passed.items()}

    results: dict[str, tuple[dict, bool]] = {}
    for batch_id in alone:  # the per-batch judge: the bulk pass's fallback
        ref, data = by_id[batch_id]
        if data is None:
            verdict, transport = ingest.not_regular(ref)
        else:
            verdict, transport = ingest.judge(data, batch_id, judges.keyring, judges.task, judges.suites_dir,
                                              judges.limits, judges.revoked)
        if verdict.ok:
            plain, _ = ingest.open_batch(data, judges.keyring)
            tables[batch_id] = pq.read_table(io.BytesIO(plain))
            valid[batch_id] = (verdict.reason, transport)
        else:
            results[batch_id] = ingest.record(store, ref, data or b"", verdict, transport, run_id, meta=metas.get(batch_id))

    ids = [ref.batch_id for ref, _, _ in group if ref.batch_id in valid]  # admitted in the group's order
    foreign = identity.foreign_window_ids(store, [tables[b] for b in ids])  # one lookup for the chunk
    good = {}
    for i, (batch_id, days) in enumerate(zip(ids, pseudonym_days_of([tables[b] for b in ids]))):
        ref, data = by_id[batch_id]
        try:
            breach = ingest.admission_breach(tables[batch_id], days, data, metas.get(batch_id, {}), foreign[i], judges.limits,
                                             judges.usage, judges.reference_windows, judges.revoked)
        except Exception as exc:  # a bug or a hostile file the checks did not foresee: this batch only
            breach = f"could not be judged: {ingest.unforeseen(exc, data)}"
        if breach:
            results[batch_id] = ingest.record(store, ref, data, ingest.refused(breach, batch_id, tables[batch_id].num_rows),
                                              valid[batch_id][1], run_id, meta=metas.get(batch_id))
        else:
            judges.usage.add(days)  # later batches of this run count it
            good[batch_id] = valid[batch_id]
    if not good:
        return results

    ids = [b for b in ids if b in good]
    run_guard.require_run()  # a worker whose run was killed writes nothing more
    version = accepted_table.commit(store, {b: tables[b] for b in ids}, judges.task, run_id)

    def ledger(batch_id: str) -> tuple[dict, bool]:  # only after the commit: see the module's docstring
        ref, data = by_id[batch_id]
        reason, transport = good[batch_id]
        verdict = BatchVerdict(True, reason, {}, tables[batch_id].num_rows)
        return ingest.record(store, ref, data, verdict, transport, run_id, {**_facts(tables[batch_id]), "table_version": version},
                             metas.get(batch_id))

    results.update(zip(ids, pool.map(ledger, ids)))
    return results


def run_chunk(settings: Settings, refs: list[BatchRef], run_id: str | None = None,
              reference_windows: ReferenceKeys | None = None, revoked: frozenset[str] = frozenset()) -> list[dict]:
    """One chunk in any process: the task, store, keys and limits are resolved from the settings there."""
    judges = Judges(tasks.resolve(settings.task), sealing.keyring(settings), settings.expectations_dir,
                    Limits.from_settings(settings), reference_windows=reference_windows or ReferenceKeys(), revoked=revoked)
    return ingest_chunk(store_from_settings(settings), refs, judges, run_id)


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


PRELOAD = ["tandem.data.run_guard", "tandem.data.bulk_ingest"]  # imported once by the forkserver


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_chunks(settings: Settings, chunks: list[list[BatchRef]], run_id: str | None = None,
               workers: int | None = None, reference_windows: ReferenceKeys | None = None,
               revoked: frozenset[str] = frozenset()) -> list[dict]:
    """Every chunk, in parallel processes (one chunk runs in this process). A forkserver starts the
    workers (once per process, with the heavy imports preloaded): a plain fork would copy locks held
    by other threads (Prefect's) and delta-rs's async runtime, which refuses to run in a forked child.
    Workers die with the run (`tandem.data.run_guard`). A worker that dies (memory, a crash) breaks the
    pool: the chunks it took down are judged again in halves in fresh processes, down to the one batch
    that kills its process, which is quarantined; the others are ingested."""
    workers = min(workers or default_workers(), len(chunks))
    if workers <= 1:
        return [e for chunk in chunks for e in run_chunk(settings, chunk, run_id, reference_windows, revoked)]
    entries: list[dict] = []
    lost: list[list[BatchRef]] = []
    with ProcessPoolExecutor(workers, mp_context=_context(), initializer=run_guard.guard, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_chunk, settings, chunk, run_id, reference_windows, revoked) for chunk in chunks]
        for chunk, future in zip(chunks, futures):
            try:
                entries += future.result()
            except BrokenProcessPool:
                lost.append(chunk)
    for chunk in lost:
        entries += _isolate(settings, chunk, run_id, reference_windows, revoked)
    return entries


def _isolate(settings: Settings, refs: list[BatchRef], run_id: str | None, reference_windows,
             revoked: frozenset[str]) -> list[dict]:
    """`refs` in one fresh process; when that dies too, each half alone, down to single batches."""
    with ProcessPoolExecutor(1, mp_context=_context(), initializer=run_guard.guard, initargs=(os.getpid(),)) as pool:
        try:
            return pool.submit(run_chunk, settings, refs, run_id, reference_windows, revoked).result()
        except BrokenProcessPool:
            pass
    if len(refs) > 1:
        half = len(refs) // 2
        return (_isolate(settings, refs[:half], run_id, reference_windows, revoked)
                + _isolate(settings, refs[half:], run_id, reference_windows, revoked))
    ref = refs[0]
    reason = "killed its judge: the process judging this batch died (out of memory or a crash); quarantined alone"
    verdict = BatchVerdict(False, reason, {"success": False, "error": "judge process died"}, 0)
    store = store_from_settings(settings)
    entry, new = ingest.record(store, ref, b"", verdict, {"stored_format": "none"}, run_id)
    landing.write_cursor(store, landing.partition_of(ref.key), [ref.batch_id])
    return [{**entry, "new": new}]


def settle(store: Store) -> list[str]:
    """After the chunks: compact the cursors and close the open days old enough that are done."""
    return landing.settle(store, landing.open_partitions(store), lambda k: ingest.batch_ref(k).batch_id)
