"""The ingest's chunks fanned out over a local multi-process Dask cluster (prefect-dask) give the same
verdicts, ledger and table as the default (parallel processes on this machine)."""

from __future__ import annotations

import shutil

from flows.ingest import ingest
from tandem import task as tasks
from tandem.data import bulk_ingest
from tandem.data.ingest import ledger_entries
from tandem.data.store import LocalStore
from tandem.fleet import sharing
from tandem.fleet import users as fleet
from tests.batches import bad_batches
from tests.test_ingest import assert_exactly_once

VERDICT = ("batch_id", "sha256", "rows", "outcome", "reason")


def _verdicts(store) -> list[tuple]:
    return sorted(tuple(e[k] for k in VERDICT) for e in ledger_entries(store))


def test_dask_ingest_matches_the_default_runner(tandem_home, monkeypatch):
    users = fleet.synthetic_fleet(tasks.resolve("har"), 3, windows_per_class=6, seed=3)
    seed_store = LocalStore(tandem_home / "seed")
    for i in range(3):
        sharing.share(seed_store, users, 0.9, f"key-{i}".encode(), batch_size=4)
    for name, data in bad_batches(users[0]).items():
        seed_store.put(f"incoming/bad/{name}.parquet", data)
    monkeypatch.setattr(bulk_ingest, "MIN_CHUNK", 8)  # several chunks from a small landing zone

    results = {}
    for runner in ("processes", "dask"):
        root = tandem_home / runner
        shutil.copytree(seed_store.root, root)
        monkeypatch.setenv("TANDEM_STORE", str(root))
        if runner == "dask":
            monkeypatch.setenv("TANDEM_DASK_ADDRESS", "local")
        summary = ingest()
        assert summary["quarantined"] == 4 and summary["new_batches"] > 8
        store = LocalStore(root)
        assert_exactly_once(store)
        results[runner] = _verdicts(store)
    assert results["processes"] == results["dask"]
