"""bench/results.json: each benchmark writes its own key and keeps the others' (bench_ingest, run first by
`make bench`, writes the file whole)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(key: str, result: dict, load_avg_at_start: tuple[float, float, float]) -> None:
    """Stamps `result` with the machine's load at start and end (a loaded machine explains a slow ratio)
    and the time, then writes it under `key`."""
    result.update(load_avg_at_start=load_avg_at_start, load_avg_at_end=os.getloadavg(),
                  measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = result
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
