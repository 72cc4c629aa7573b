"""Issue 17 / 21: a tabular task whose genuine rows repeat (small integers) must not lose its batches to
the reference-set check; the test devices' own uploads are still caught, by their identity. The task is
made as a team makes one (`tandem init`), every command its own process (each resolves the task from its settings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def tandem(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tandem.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert done.returncode == 0, f"tandem {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


def ledger(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "store" / "ledger" / "batches").glob("*.json")]


def test_repeated_tabular_values_keep_their_batches_and_reference_devices_are_known_by_identity(tmp_path):
    folder, home = tmp_path / "days", tmp_path / "home"
    env = {**os.environ, "TANDEM_TASK": str(folder), "TANDEM_HOME": str(home), "TANDEM_PSEUDONYM_KEY": "test-key-days",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "TANDEM_MODEL_NAME"):
        env.pop(var, None)
    tandem(env, "init", str(folder), "--template", "tabular-regression")
    data = pd.read_csv(folder / "data.csv")
    i = np.arange(len(data))
    data["duration_min"] = i % 10  # days 0-9: every user has the same handful of values
    data["distance_km"] = (i // 10) % 3
    data["climb_m"] = 0
    data.to_csv(folder / "data.csv", index=False)
    tandem(env, "share")
    tandem(env, "ingest", "--direct")
    entries = ledger(home)
    assert entries, "nothing was shared"
    reference_hits = [e for e in entries if "reference set" in e["reason"]]
    assert not reference_hits, f"{len(reference_hits)} of {len(entries)} batches lost to the reference check"
    assert all(e["outcome"] == "accepted" for e in entries), [e["reason"] for e in entries if e["outcome"] != "accepted"]

    # a test device (an evaluation user, whose recordings are the reference set) uploads its own rows
    evaluators = json.loads((home / "devices" / "evaluation.json").read_text())["users"]
    own = home / "devices" / evaluators[0] / "local.parquet"
    target = home / "store" / "incoming" / "intruder" / "own.parquet"
    target.parent.mkdir(parents=True)
    shutil.copy(own, target)
    tandem(env, "ingest", "--direct")
    intruder = [e for e in ledger(home) if e["key"] == "incoming/intruder/own.parquet"]
    assert len(intruder) == 1 and intruder[0]["outcome"] == "quarantined" and "reference set" in intruder[0]["reason"]
