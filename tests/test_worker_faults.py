"""One batch's death (its worker process killed: memory, a native crash) never takes its chunk's good
batches with it: the pool's lost chunks are judged again in halves in fresh processes, the batch that
kills its process is quarantined, every other batch ingested once. Real forkserver workers, real GX and
Delta; the kill itself is injected (tests/poison_fault.py), the one mock here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tandem import task as tasks
from tandem.data import ingest
from tandem.data.snapshot import table_snapshot
from tandem.data.store import LocalStore
from tandem.fleet.sharing import table_bytes
from tandem.fleet.users import synthetic_fleet
from tests.batches import good_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
from tandem.data import bulk_ingest, ingest
from tandem.settings import Settings
bulk_ingest.PRELOAD.append("tests.poison_fault")  # this process's forkserver only
keys = json.loads(sys.argv[1])
chunks = [[ingest.batch_ref(k) for k in chunk] for chunk in keys]
entries = bulk_ingest.run_chunks(Settings(), chunks, workers=2)
print(json.dumps({e["key"]: e["outcome"] + ": " + e["reason"] for e in entries}))
"""


def test_a_batch_that_kills_its_worker_is_quarantined_alone(tmp_path):
    task = tasks.resolve("har")  # the workers resolve it from the settings they receive (TANDEM_TASK unset: har)
    users = synthetic_fleet(task, 4, windows_per_class=4, seed=9)
    home = tmp_path / "home"
    store = LocalStore(home / "store")
    keys = [f"incoming/u{i}/b.parquet" for i in range(3)] + ["incoming/x/poison.parquet"]
    for i, key in enumerate(keys):
        store.put(key, table_bytes(good_table(users[i], 8, b"k")))
    chunks = [[keys[0], keys[3]], [keys[1], keys[2]]]
    env = {**os.environ, "TANDEM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TANDEM_STORE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(chunks)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes["incoming/x/poison.parquet"].startswith("quarantined: killed its judge"), outcomes
    assert all(outcomes[k].startswith("accepted") for k in keys[:3]), outcomes
    assert table_snapshot(store, task).manifest["rows"] == 24  # the three good batches, each once
    assert not ingest.discover(store)
