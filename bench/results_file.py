"""bench/results.json: each benchmark writes its own key and keeps the others' (bench_ingest, run first by
`make bench`, writes the file whole)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(key: str, result: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = result
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
