"""`tandem run` as its users run it, as processes, in a hostile world: killed with SIGKILL at any point
and run again; two runs at once; afterwards no raw user id and no secret anywhere the server wrote.
Real Prefect (ephemeral), real MLflow (SQLite), the local store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from tandem.data.store import store_from_settings
from tandem.release.layout import list_releases, pull, read_channel
from tandem.release.signing import trusted_from
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tests.flow_helpers import FAST, share_synthetic

ROOT = Path(__file__).resolve().parents[1]
GIVE_UP = 900  # seconds: only so that a broken lock fails the test instead of hanging it
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # small networks: torch's thread pool only contends (two runs on two cores)


@pytest.fixture
def home(tandem_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_PUBLISH_LEASE_SECONDS", "30")
    settings = Settings()
    sharers, evaluators = share_synthetic(settings)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(FAST))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tandem_home / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING", **THREADS}
    return settings, env, params, [u.user_id for u in sharers + evaluators]


def start_run(env, params, module: str = "tandem.cli") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, "run", "--params-file", str(params)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()) - found:
            found.add(child)
            todo.append(child)
    return found


def processes_of(home: Path) -> list[str]:
    """Live processes (psutil, like pgrep -f with the environment) started with this TANDEM_HOME."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and p.environ().get("TANDEM_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def wait_for(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + GIVE_UP
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def _running_mlflow_runs(store) -> int:
    db = Path(store.url).parent / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy
        return 0


POINTS = {
    # while validating: the first ledger entry is there
    "validate": lambda store, model: bool(store.list("ledger/batches/")),
    # while training: its MLflow run is open
    "train": lambda store, model: _running_mlflow_runs(store) > 0,
    # inside gate-and-publish: it holds the publish lease (a generation not marked released)
    "publish": lambda store, model: _lease_held(store, f"locks/publish-{model}/"),
}


def _lease_held(store, prefix: str) -> bool:
    keys = set(store.list(prefix))
    return any(k.endswith(".json") and k.replace(".json", ".released") not in keys for k in keys)


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_at_any_point_then_a_rerun_publishes(home, point):
    settings, env, params, _ = home
    store = store_from_settings(settings)
    # the publish step lasts half a second: that run pauses inside it so that the kill lands there
    proc = start_run({**env, "TANDEM_TEST_PAUSE_SECONDS": "600"}, params, "tests.paused_run") if point == "publish" \
        else start_run(env, params)
    wait_for(lambda: POINTS[point](store, settings.model_name), f"the {point} step", proc)
    tree = descendants(proc.pid)  # its Prefect server, ingest forkserver and workers, resource tracker
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    # the killed run's ephemeral Prefect server, ingest workers (and anything else it started) go away by themselves
    wait_for(lambda: not any(alive(pid) for pid in tree), "the killed run's processes to exit")
    wait_for(lambda: not processes_of(settings.home), "no process of the killed run (by its TANDEM_HOME)")
    assert list_releases(store, settings.model_name) == []

    rerun = start_run(env, params)
    out, _ = rerun.communicate(timeout=GIVE_UP)
    assert rerun.returncode == 0, out[-3000:]
    assert f"published {settings.model_name} version" in out, out[-3000:]
    assert len(list_releases(store, settings.model_name)) == 1, out[-3000:]
    [release] = list_releases(store, settings.model_name)
    assert read_channel(store, settings.model_name, "staging")["version"] == release["version"]
    runs = MlflowClient(settings.tracking_uri).search_runs(
        [MlflowClient(settings.tracking_uri).get_experiment_by_name(f"tandem/{settings.model_name}").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]  # the killed run's was closed as FAILED
    if point != "validate":
        assert any(r.info.status == "FAILED" and r.data.tags.get("tandem.closed") for r in runs)


def test_two_runs_at_once_publish_one_release_and_nothing_leaks(home, tmp_path):
    settings, env, params, user_ids = home
    store = store_from_settings(settings)
    # each its own Prefect home (a fresh Prefect database migrating twice at once is Prefect's race, not
    # ours); one store and one MLflow, as two workers share them
    # MLflow's SQLite schema is created on first use, which is not safe twice at once: create it first
    Tracker(settings).experiment_id()
    first = start_run({**env, "PREFECT_HOME": str(tmp_path / "prefect-a")}, params)
    second = start_run({**env, "PREFECT_HOME": str(tmp_path / "prefect-b")}, params)
    outs = [p.communicate(timeout=GIVE_UP)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], "\n=====\n".join(o[-6000:] for o in outs)
    assert sum(f"published {settings.model_name} version" in o for o in outs) == 1, outs
    assert sum("nothing published" in o for o in outs) == 1, outs  # the other saw it done, under the lease
    assert len(list_releases(store, settings.model_name)) == 1
    pull(store, settings.model_name, tmp_path / "app", trusted_from(settings))

    # a scan of everything the server wrote: the store, MLflow's database and artifacts
    secrets = [os.environ["TANDEM_PSEUDONYM_KEY"], os.environ["TANDEM_SIGNING_KEY"]]
    places = [settings.home / "store", settings.home / "mlartifacts"]
    blobs = {p: _readable(p) for place in places for p in place.rglob("*") if p.is_file()}
    with sqlite3.connect(settings.home / "mlflow.db") as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
        dump = "\n".join(str(row) for t in tables for row in db.execute(f"select * from {t}")).encode()
    blobs[Path("mlflow.db")] = dump
    # and the secrets never reach Prefect's databases (task inputs are hashed, results not persisted)
    prefect_dbs = {p: p.read_bytes() for p in tmp_path.glob("prefect-*/*.db*") if p.is_file()}
    assert prefect_dbs
    for secret in secrets:
        assert not [str(p) for p, data in prefect_dbs.items() if secret.encode() in data]
    assert len(blobs) > 20
    for needle in [*user_ids, *secrets]:
        hits = [str(p) for p, data in blobs.items() if needle.encode() in data]
        assert not hits, f"{needle[:20]}… found in {hits[:5]}"


def _readable(path: Path) -> bytes:
    """A file's bytes, plus its decoded contents where compression would hide a string (parquet,
    including the Delta table's files; numpy archives such as the reference set)."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        data += pq.read_table(path).to_pandas().to_csv().encode()
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            data += "\n".join(str(npz[name].tolist()) for name in npz.files).encode()
    return data
