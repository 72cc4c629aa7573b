"""The featurization fixture for the spec-only test: feature_spec.json and golden windows (raw HAPT
windows and the features the device golden path computes), written to tests/fixtures/.

    python -m tests.feature_fixture
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.builtin_tasks.har.loader import hapt_fleet
from tandem.contract import features

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def golden_windows(per_activity: int = 2) -> dict:
    user = hapt_fleet(users=[1])[0]
    featurize = features.of(tasks.resolve("har")).featurize_window  # what the release's golden path is given
    rows = [int(i) for a in sorted(set(user.labels)) for i in np.flatnonzero(user.labels == a)[:per_activity]]
    return {"source": "HAPT user 01, the first windows of each activity",
            "windows": [{"raw": user.windows[i].tolist(), "label": str(user.labels[i]),
                         "features": np.asarray(featurize(user.windows[i]), dtype=np.float64).tolist()} for i in rows]}


def contents() -> dict[str, str]:
    return {"feature_spec.json": json.dumps(features.of(tasks.resolve("har")).feature_spec(), indent=1) + "\n",
            "feature_golden.json": json.dumps(golden_windows()) + "\n"}


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, text in contents().items():
        (FIXTURES / name).write_text(text)
        print(f"wrote {FIXTURES / name}")
