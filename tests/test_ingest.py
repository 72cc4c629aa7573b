"""Bulk ingest on real parts: GX over many batches at once, the Delta table of accepted rows (local
folder and moto's S3 server over HTTP), O(new) discovery, exactly-once across a crash and across two
runs at once (real subprocesses, killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from threading import Barrier

import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tandem import task as tasks
from tandem.contract import schema
from tandem.data import bulk_ingest, ingest, landing
from tandem.data import table as accepted
from tandem.data.snapshot import table_snapshot
from tandem.data.store import LocalStore, S3Store
from tandem.data.validation import bulk, validate_batch
from tandem.data.validation.batch_stats import judged_on_statistics
from tandem.fleet import sharing
from tandem.fleet import users as fleet
from tandem.privacy.policy import load_policy
from tests.batches import bad_batches, good_table, replace_column
from tests.task_templates import new_task

REPO = Path(__file__).resolve().parents[1]
TASK = tasks.resolve("har")  # what the pipeline's Context resolves from the settings and passes down
VERDICT = ("batch_id", "sha256", "rows", "outcome", "reason")


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server in a process of its own: delta-rs blocks in native code while it talks to S3, and
    a server thread inside this process could then wait for the interpreter forever."""
    from tests.conftest import free_port

    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(var, value)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait()


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"tandem-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def users():
    return fleet.synthetic_fleet(TASK, 6, windows_per_class=8, seed=4)


def seed_landing(store, users, policy="pseudonymized", sharers=None) -> None:
    """Good batches from the real device upload (of the first `sharers` users; all by default), plus one of
    each way a batch can be bad."""
    sharing.share(store, users[:sharers], 0.9, b"key", batch_size=8, policy=load_policy(policy).model_copy(update={"k": 2}))
    for name, data in bad_batches(users[0]).items():
        store.put(f"incoming/bad/{name}.parquet", data)
    table = good_table(users[1], 8, b"key")
    ids = table.column("window_id").to_pylist()
    store.put("incoming/bad/dup_window.parquet", sharing.table_bytes(replace_column(table, "window_id", [ids[0]] * 8)))
    high = table.column("gravity_z_max").to_pylist()
    store.put("incoming/bad/range.parquet", sharing.table_bytes(replace_column(table, "gravity_z_max", [99.0] + high[1:])))


def table_rows_by_batch(store) -> pd.Series:
    dt = accepted.open_table(store)
    if dt is None:
        return pd.Series(dtype=int)
    return dt.to_pyarrow_table(columns=[accepted.BATCH_ID]).to_pandas()[accepted.BATCH_ID].value_counts()


def assert_exactly_once(store) -> list[dict]:
    """Every batch of the landing zone in the ledger once; every accepted row in the table once."""
    keys = [k for k in store.list("incoming/") if k.endswith((".parquet", ".sealed"))]
    entries = ingest.ledger_entries(store)
    assert sorted(e["batch_id"] for e in entries) == sorted({ingest.batch_ref(k).batch_id for k in keys})
    in_table = table_rows_by_batch(store)
    accepted_rows = {e["batch_id"]: e["rows"] for e in entries if e["outcome"] == "accepted"}
    assert in_table.to_dict() == accepted_rows  # per batch: its rows, once; quarantined batches: none
    return entries


def test_bulk_verdicts_are_the_per_batch_verdicts(users, tmp_path):
    # one user's good batches (6) beside every kind of bad one: the per-batch side judges each batch in a
    # GX pass and a commit of its own (seconds each), so its cost grows with the batches, not what it shows
    bulk, alone = LocalStore(tmp_path / "bulk"), LocalStore(tmp_path / "alone")
    seed_landing(bulk, users, sharers=1)
    seed_landing(alone, users, sharers=1)
    entries = bulk_ingest.ingest_chunk(bulk, ingest.discover(bulk), bulk_ingest.Judges(TASK))
    judges = bulk_ingest.Judges(TASK)  # each batch a chunk of its own: the production path, one batch at a time
    per_batch = [bulk_ingest.ingest_chunk(alone, [ref], judges)[0] for ref in ingest.discover(alone)]
    verdicts = sorted(tuple(e[k] for k in VERDICT) for e in entries)
    assert verdicts == sorted(tuple(e[k] for k in VERDICT) for e in per_batch)
    quarantined = {Path(e["key"]).stem: e for e in entries if e["outcome"] == "quarantined"}  # by file name
    assert set(quarantined) == {"truncated", "wrong_type", "raw_email", "bad_label", "dup_window", "range"}
    assert "window_id: 8 of 8 values are duplicated" in quarantined["dup_window"]["reason"]
    assert "gravity_z_max: 1 of 8 values outside [-24, 24]" in quarantined["range"]["reason"]
    for e in quarantined.values():  # each bad batch alone in quarantine, with its own GX result and reason
        result = json.loads(bulk.get(f"quarantine/{e['batch_id']}/validation.json"))
        assert (result.get("meta") or {}).get("tandem_batch_id", result.get("batch_id")) == e["batch_id"]
        assert bulk.get(f"quarantine/{e['batch_id']}/reason.txt").decode().strip() == e["reason"]
    assert all(e["new"] for e in entries) and len(entries) - len(quarantined) >= 5  # good batches too
    assert_exactly_once(bulk)


def test_a_snapshot_is_a_table_version(users, tmp_path):
    store = LocalStore(tmp_path / "store")
    sharing.share(store, users[:3], 0.9, b"key", batch_size=8)
    bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    first = table_snapshot(store, TASK)
    sharing.share(store, users[3:], 0.9, b"key", batch_size=8)
    bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    latest = table_snapshot(store, TASK)
    assert latest.manifest["table"]["version"] > first.manifest["table"]["version"]
    assert latest.manifest["rows"] > first.manifest["rows"]
    again = table_snapshot(store, TASK, version=first.manifest["table"]["version"])  # time travel
    pd.testing.assert_frame_equal(again.frame, first.frame)
    assert again.snapshot_id == first.snapshot_id


def test_a_crash_between_the_table_commit_and_the_ledger_counts_nothing_twice(users, tmp_path):
    """The state a crash leaves, made for real: the chunk's rows committed, no ledger entry, no cursor."""
    store = LocalStore(tmp_path / "store")
    sharing.share(store, users, 0.9, b"key", batch_size=8)
    refs = ingest.discover(store)
    rows = pa.concat_tables([accepted.batch_rows(r.batch_id, pq.read_table(store.root / r.key), TASK) for r in refs[:5]])
    version, done = accepted.append(store, rows, [r.batch_id for r in refs[:5]])
    assert done == {r.batch_id for r in refs[:5]} and not ingest.ledger_entries(store)

    entries = bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    assert len(entries) == len(refs)
    assert accepted.open_table(store).version() == version + 1  # one commit, for the other batches only
    assert_exactly_once(store)
    assert not ingest.discover(store)


def _two_users_batches(store, users):
    """Two users share into `store`: (the batches' rows as the table holds them, their ids, rows per
    batch in the files)."""
    sharing.share(store, users[:2], 0.9, b"key", batch_size=8)
    refs = ingest.discover(store)
    rows = pa.concat_tables([accepted.batch_rows(r.batch_id, pq.read_table(store.root / r.key), TASK) for r in refs])
    return rows, [r.batch_id for r in refs], {r.batch_id: pq.read_metadata(store.root / r.key).num_rows for r in refs}


def test_append_leaves_out_committed_batches_and_delta_refuses_a_stale_commit_of_one(users, tmp_path):
    store = LocalStore(tmp_path / "store")
    rows, ids, file_rows = _two_users_batches(store, users)
    accepted.append(store, rows, ids[:1])
    stale = accepted.open_table(store)  # a writer that checked before the others committed
    assert accepted.committed(stale, ids) == {ids[0]}
    _, committed_now = accepted.append(store, rows, ids[:3])
    assert committed_now == set(ids[1:3])  # the committed batch left out
    # the race itself: the stale writer commits batch 1 too, carrying its transaction -> Delta refuses
    where = accepted.locate(store)
    with pytest.raises(CommitFailedError, match="Concurrent transaction"):
        write_deltalake(stale, rows.filter(pc.equal(rows[accepted.BATCH_ID], ids[1])).cast(accepted.table_schema(TASK)),
                        mode="append", storage_options=where.storage_options,
                        commit_properties=CommitProperties(app_transactions=[Transaction(accepted.app_id(ids[1]), 1)]))
    _, committed_now = accepted.append(store, rows, ids)  # what append does after such a refusal: look again
    assert committed_now == set(ids[3:])
    assert table_rows_by_batch(store).to_dict() == file_rows


def test_writers_racing_to_create_the_table_commit_each_batch_once(users, tmp_path):
    """The race CI once lost: every writer sees no table yet, and all append the same batches at once."""
    rows, ids, file_rows = _two_users_batches(LocalStore(tmp_path / "source"), users)
    for round_ in range(5):
        store = LocalStore(tmp_path / f"store-{round_}")
        start = Barrier(4)

        def writer(_):
            start.wait()
            return accepted.append(store, rows, ids)[1]

        with ThreadPoolExecutor(4) as pool:
            won = list(pool.map(writer, range(4)))
        assert sorted(b for w in won for b in w) == sorted(ids)  # each batch committed by exactly one writer
        assert table_rows_by_batch(store).to_dict() == file_rows


def test_discovery_lists_only_open_days_and_still_reads_the_flat_layout(users, tmp_path):
    store = LocalStore(tmp_path / "store")
    today = datetime.now(timezone.utc)
    old_day = landing.upload_day(today - timedelta(days=5))
    table = good_table(users[0], 8, b"key")
    store.put(landing.upload_key("dev", "old1", ".parquet", old_day), sharing.table_bytes(table))
    store.put("incoming/legacydevice/flat1.parquet", sharing.table_bytes(good_table(users[1], 8, b"key")))
    assert {Path(r.key).stem for r in ingest.discover(store)} == {"old1", "flat1"}
    bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    assert bulk_ingest.settle(store) == [f"dt={old_day}"]  # done and old: closed
    assert landing.open_partitions(store) == [landing.FLAT]
    store.put(landing.upload_key("dev", "new1", ".parquet"), sharing.table_bytes(good_table(users[2], 8, b"key")))
    assert [Path(r.key).stem for r in ingest.discover(store)] == ["new1"]
    # the layout's rule: a closed day is not listed again, so a late upload into it is not seen
    store.put(landing.upload_key("dev", "late1", ".parquet", old_day), sharing.table_bytes(good_table(users[3], 8, b"key")))
    assert [Path(r.key).stem for r in ingest.discover(store)] == ["new1"]


def test_ingest_on_s3_through_moto(users, moto_endpoint):
    s3_bucket = new_bucket(moto_endpoint)
    store = S3Store(s3_bucket, "tandem", endpoint_url=moto_endpoint)
    seed_landing(store, users)
    entries = bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    assert sum(e["outcome"] == "quarantined" for e in entries) == 6
    assert accepted.locate(store).uri == f"s3://{s3_bucket}/tandem/table/accepted"
    snap = table_snapshot(store, TASK)
    assert snap.manifest["rows"] == sum(e["rows"] for e in entries if e["outcome"] == "accepted")
    assert_exactly_once(store)
    # only the truncated batch comes back: it may still be being copied in (judged again once it changes)
    assert [r.key for r in ingest.discover(store)] == ["incoming/bad/truncated.parquet"]


# --- real processes: SIGKILL at many points, and two runs at once --------------------------------

def _env(home: Path, store: str, extra: dict | None = None) -> dict:
    env = {**os.environ, "TANDEM_HOME": str(home), "TANDEM_STORE": store, "PYTHONPATH": str(REPO),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(extra or {})}
    return env


def _start_ingest(env: dict) -> subprocess.Popen:
    # its own process group: a kill takes the worker processes down with it, as a machine failure would
    return subprocess.Popen([sys.executable, "-m", "tandem.cli", "ingest", "--direct"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _fleet_store(tmp_path, users, copies: int) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    for i in range(copies):  # many batches: each user's windows under several keys
        sharing.share(store, users, 0.9, f"key-{i}".encode(), batch_size=8)
    return store


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for name in os.listdir(folder) if name.endswith(suffix)) if folder.is_dir() else 0


# When to kill, judged by what the run has written so far (timing alone depends on the machine's load).
KILL_POINTS = {
    "while starting up or validating": lambda commits, ledgered: True,
    "right after a table commit, before its ledger entries": lambda commits, ledgered: commits >= 1,
    "in the middle of writing ledger entries": lambda commits, ledgered: ledgered >= 1,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_at_any_point_then_a_rerun_counts_every_batch_and_row_once(users, tmp_path, point):
    store = _fleet_store(tmp_path, users, 2)  # 70 batches: two chunks of 35 on two cores, two commits to kill around
    env = _env(tmp_path / "home", str(store.root))
    file_rows = {ingest.batch_ref(k).batch_id: pq.read_metadata(store.root / k).num_rows for k in store.list("incoming/")}
    log, ledger = store.root / accepted.TABLE / "_delta_log", store.root / ingest.LEDGER
    proc = _start_ingest(env)
    time.sleep(2.0)  # at least past the interpreter's start
    while proc.poll() is None and not KILL_POINTS[point](_count(log, ".json"), _count(ledger, ".json")):
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    in_table = table_rows_by_batch(store)  # already now: no batch twice, no partial batch
    assert all(file_rows[b] == n for b, n in in_table.items())
    ledgered = {e["batch_id"] for e in ingest.ledger_entries(store)}
    state = (len(in_table), len(ledgered), len(set(in_table.index) - ledgered))

    final = subprocess.run([sys.executable, "-m", "tandem.cli", "ingest", "--direct"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=1200)
    assert final.returncode == 0, final.stderr[-2000:]
    entries = assert_exactly_once(store)
    assert all(e["outcome"] == "accepted" for e in entries) and len(entries) == len(file_rows)
    print(f"{point}: killed={killed}, left (in table, in ledger, committed but not ledgered) = {state}; "
          f"after the rerun {len(entries)} batches, {int(table_rows_by_batch(store).sum())} rows, once each")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_ingests_at_once_count_each_batch_once(users, tmp_path, backend, request):
    if backend == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = new_bucket(endpoint)
        store = S3Store(bucket, "tandem", endpoint_url=endpoint)
        for i in range(2):  # 70 batches: two chunks in each run on two cores, racing the other run's
            sharing.share(store, users, 0.9, f"key-{i}".encode(), batch_size=8)
        env = _env(tmp_path / "home", f"s3://{bucket}/tandem", {"TANDEM_S3_ENDPOINT_URL": endpoint})
    else:
        store = _fleet_store(tmp_path, users, 2)
        env = _env(tmp_path / "home", str(store.root))
    runs = [_start_ingest(env) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    entries = assert_exactly_once(store)
    new = [int(out.split("batches: ")[1].split(" new")[0]) for out, _ in outputs]
    assert sum(new) == len(entries)  # what each run says it recorded adds up: nothing counted twice
    assert accepted.open_table(store).history()  # and the table's commits are all there: rows add up above


def test_ranges_and_nulls_judged_on_batch_statistics_give_the_row_verdicts(users):
    """The bulk pass validates not-null and range expectations on each batch's minimum and maximum;
    at every edge (NaN, null, infinity, exactly on a bound, just past one, a future capture time) a
    batch fails the bulk pass exactly when GX on its own rows fails it."""
    table = good_table(users[1], 8, b"key")

    def edited(column, value, row=2):
        values = table.column(column).to_pylist()
        values[row] = value
        return table.set_column(table.schema.get_field_index(column), table.schema.field(column).with_nullable(True),
                                pa.array(values, table.schema.field(column).type))

    future = datetime.now(timezone.utc) + timedelta(days=30)
    variants = {"good": table, "nan": edited("gravity_x_mean", float("nan")), "null": edited("body_x_std", None),
                "inf": edited("gyro_y_max", float("inf")), "on_the_bound": edited("gravity_z_max", 24.0),
                "past_the_bound": edited("gravity_z_min", -24.000001), "future": edited("captured_at", future)}
    candidates = [bulk.structural(pq.ParquetFile(pa.BufferReader(sharing.table_bytes(t))), name, TASK) for name, t in variants.items()]
    assert all(candidates), "every variant is bulk material (the schema's types)"
    failed = set(bulk.validate_many(candidates, TASK).failed)
    alone = {name for name, t in variants.items() if not validate_batch(sharing.table_bytes(t), name, TASK).ok}
    assert failed == alone == {"nan", "null", "inf", "past_the_bound", "future"}


def test_an_edited_expectation_with_mostly_stays_row_wise():
    """A team's suite may loosen an expectation with `mostly`: no longer exact on min/max, so on the rows."""
    exact = gxe.ExpectColumnValuesToBeBetween(column="gravity_z_max", min_value=-24, max_value=24).configuration
    loose = gxe.ExpectColumnValuesToBeBetween(column="gravity_z_max", min_value=-24, max_value=24, mostly=0.9).configuration
    no_nulls = gxe.ExpectColumnValuesToNotBeNull(column="pseudonym").configuration  # a string column: its null count
    pattern = gxe.ExpectColumnValuesToMatchRegex(column="pseudonym", regex="^[0-9a-f]{64}$").configuration
    batch_schema = schema.of(TASK).schema
    assert judged_on_statistics(exact, batch_schema) and judged_on_statistics(no_nulls, batch_schema)
    assert not judged_on_statistics(loose, batch_schema) and not judged_on_statistics(pattern, batch_schema)


def test_a_chunk_of_only_bad_batches_quarantines_each(users, tmp_path):
    """Nothing passes the bulk pass: every batch is still ledgered, quarantined with its reason."""
    store = LocalStore(tmp_path / "store")
    table = good_table(users[1], 8, b"key")
    high = table.column("gravity_z_max").to_pylist()
    store.put("incoming/bad/range.parquet", sharing.table_bytes(replace_column(table, "gravity_z_max", [99.0] + high[1:])))
    entries = bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(TASK))
    assert [e["outcome"] for e in entries] == ["quarantined"]
    assert "gravity_z_max: 1 of 8 values outside [-24, 24]" in entries[0]["reason"]
    assert_exactly_once(store)


def test_one_process_ingests_two_tasks_one_after_the_other(users, tmp_path):
    """Issue 17: the task travels. HAR's batches and a team's 7-class sensor task's and regression task's
    (made from `tandem init`'s templates, not built-ins) go through the production chunk in one process,
    each into its own store: each judged by its own schema and suites, its table shaped by its own columns,
    and a batch of one task is quarantined by another (nothing cached per process for one task)."""
    seven = new_task(tmp_path, "sensor-classification", "gestures",
                     target={"labels": ["a", "b", "c", "d", "e", "f", "g"]})
    effort = new_task(tmp_path, "tabular-regression", "effort")
    for task, fleet_users in ((TASK, users), (seven, fleet.synthetic_fleet(seven, 3, windows_per_class=4, seed=1)),
                              (effort, fleet.synthetic_fleet(effort, 3, windows_per_class=12, seed=2))):
        store = LocalStore(tmp_path / f"store-{task.name}")
        sharing.share(store, fleet_users, 0.9, b"key", batch_size=8)
        entries = bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(task))
        assert entries and all(e["outcome"] == "accepted" for e in entries), [e["reason"] for e in entries]
        snap = table_snapshot(store, task)
        assert snap.manifest["rows"] == sum(e["rows"] for e in entries)
        assert list(snap.frame.columns[3:-2]) == [*schema.of(task).feature_names, "label"]
        assert_exactly_once(store)
    assert len(set(fleet.synthetic_fleet(seven, 3, windows_per_class=4, seed=1)[0].labels)) == 7
    stray = LocalStore(tmp_path / "store-effort")  # one of gestures' batches arrives at effort's store
    key = next(k for k in LocalStore(tmp_path / "store-gestures").list("incoming/") if k.endswith(".parquet"))
    stray.put("incoming/stray/b.parquet", LocalStore(tmp_path / "store-gestures").get(key))
    entry = bulk_ingest.ingest_chunk(stray, ingest.discover(stray), bulk_ingest.Judges(effort))[0]
    assert entry["outcome"] == "quarantined" and f"this server serves {effort.tag}" in entry["reason"]
