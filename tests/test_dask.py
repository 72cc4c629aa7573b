"""Per-batch validation fanned out over a local multi-process Dask cluster (prefect-dask) gives the
same verdicts as the default thread runner."""

from __future__ import annotations

import shutil

from flows.runners import batch_task_runner
from flows.train_release import validate_batches
from tandem import pipeline
from tandem.data.ingest import discover, ledger_entries
from tandem.data.store import LocalStore
from tandem.fleet import sharing
from tandem.fleet import users as fleet
from tandem.settings import Settings
from tests.batches import bad_batches

VERDICT = ("batch_id", "sha256", "rows", "outcome", "reason")


def _verdicts(store) -> list[tuple]:
    return sorted(tuple(e[k] for k in VERDICT) for e in ledger_entries(store))


def test_dask_validation_matches_the_default_runner(tandem_home, monkeypatch):
    users = fleet.synthetic_fleet(3, windows_per_class=6, seed=3)
    seed_store = LocalStore(tandem_home / "seed")
    sharing.share(seed_store, users, 0.9, b"key", batch_size=12)
    for name, data in bad_batches(users[0]).items():
        seed_store.put(f"incoming/bad/{name}.parquet", data)

    results = {}
    for runner in ("threads", "dask"):
        root = tandem_home / runner
        shutil.copytree(seed_store.root, root)
        monkeypatch.setenv("TANDEM_STORE", str(root))
        if runner == "dask":
            monkeypatch.setenv("TANDEM_DASK_ADDRESS", "local")
        store = LocalStore(root)
        refs = discover(store)
        ctx = pipeline.Context(Settings())
        flow = validate_batches.with_options(task_runner=batch_task_runner(ctx.settings))
        assert type(flow.task_runner).__name__ == {"threads": "ThreadPoolTaskRunner", "dask": "DaskTaskRunner"}[runner]
        entries = flow(ctx, refs)
        assert len(entries) == len(refs) > 4
        results[runner] = _verdicts(store)
    assert results["threads"] == results["dask"]
    assert sum(v[3] == "quarantined" for v in results["dask"]) == 4
