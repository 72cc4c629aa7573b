"""Snapshot: the accepted rows of every accepted batch as one training dataset (parquet) with a
manifest of the batch ids and checksums it came from. The snapshot id is a digest of that list, so
the same accepted batches always give the same snapshot, and a snapshot is written once.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tandem.storage import Store, get_json, put_json, sha256_hex

DATASETS = "datasets/"


@dataclass
class Snapshot:
    snapshot_id: str
    frame: pd.DataFrame
    manifest: dict

    @property
    def key(self) -> str:
        return f"{DATASETS}{self.snapshot_id}/data.parquet"


def snapshot_id(entries: list[dict]) -> str:
    lines = sorted(f"{e['batch_id']}:{e['sha256']}" for e in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _read_verified(store: Store, entry: dict) -> pa.Table:
    data = store.get(entry["key"])
    if sha256_hex(data) != entry["sha256"]:
        raise RuntimeError(f"batch {entry['batch_id']} changed since it was accepted (sha256 mismatch at {entry['key']})")
    return pq.read_table(io.BytesIO(data))


def build_snapshot(store: Store, entries: list[dict]) -> Snapshot:
    """Read, verify and concatenate the accepted batches; a window shared twice counts once."""
    if not entries:
        raise ValueError("no accepted batches: nothing to snapshot")
    sid = snapshot_id(entries)
    manifest_key = f"{DATASETS}{sid}/manifest.json"
    if store.exists(manifest_key):
        frame = pq.read_table(io.BytesIO(store.get(f"{DATASETS}{sid}/data.parquet"))).to_pandas()
        return Snapshot(sid, frame, get_json(store, manifest_key))
    entries = sorted(entries, key=lambda e: e["batch_id"])
    table = pa.concat_tables([_read_verified(store, e) for e in entries])
    frame = table.to_pandas().drop_duplicates("window_id").sort_values(["captured_at", "window_id"]).reset_index(drop=True)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), sink, compression="zstd")
    data = sink.getvalue()
    manifest = {
        "snapshot_id": sid,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": len(frame),
        "users": int(frame["pseudonym"].nunique()),
        "label_counts": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()},
        "data": {"key": f"{DATASETS}{sid}/data.parquet", "sha256": sha256_hex(data), "size": len(data)},
        "batches": [{"batch_id": e["batch_id"], "sha256": e["sha256"], "rows": e["rows"]} for e in entries],
    }
    store.put(f"{DATASETS}{sid}/data.parquet", data, if_absent=True)
    put_json(store, manifest_key, manifest, if_absent=True)  # the manifest last: it marks the snapshot complete
    return Snapshot(sid, frame, manifest)
