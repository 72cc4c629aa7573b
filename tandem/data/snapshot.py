"""Snapshot: the training dataset as one version of the table of accepted rows (`tandem.data.table`),
less what was withdrawn, with a manifest (``datasets/<id>/manifest.json``) of the table version, the
batches, the policies and k. The id is a digest of the table version, its batches and the
revocations, so the same data always gives the same snapshot.

The table holds the batches' modified form (pseudonymized, generalized, noised), never a sealed
payload. When any accepted batch's policy declares the
anonymized form, k is enforced over the whole snapshot (`tandem.privacy.anonymity.enforce_k`: generalize
further or suppress) and what was done is recorded in the manifest under ``k_anonymity``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tandem.contract import schema
from tandem.data import table as accepted
from tandem.data.limits import dedup_rows
from tandem.data.revocations import Revocations
from tandem.data.store import Store, get_json, put_json
from tandem.data.store_keys import DATASETS
from tandem.privacy.anonymity import enforce_k
from tandem.privacy.forms import FORMS
from tandem.privacy.policy import load_policy
from tandem.task import Task


@dataclass
class Snapshot:
    snapshot_id: str
    frame: pd.DataFrame
    manifest: dict
    location: str | None = None  # a table version's data: the table's key (the manifest says which version)

    @property
    def key(self) -> str:
        return self.location or f"{DATASETS}{self.snapshot_id}/data.parquet"


def train_columns(task: Task) -> list[str]:
    """Nothing is copied: the version is the dataset, and training reads only the columns it needs from it."""
    return ["pseudonym", "window_id", "captured_at", *schema.of(task).feature_names, "label", "policy", accepted.BATCH_ID]


def _table_policies(store: Store, names: set[str], task: Task) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for key in store.list(accepted.POLICIES):
        policy = get_json(store, key)
        if policy.get("name") in names:
            found.setdefault(policy["name"], policy)
    for name in names - set(found):
        try:
            found[name] = load_policy(name).public_dict(task)
        except ValueError:
            pass
    return found


def _within_window(rows: pa.Table, days: int | None, now: datetime | None) -> pa.Table:
    """The rows of batches whose newest window falls within the last `days` days (as the ledger's
    ``captured_to`` decided before)."""
    if days is None:
        return rows
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    newest = rows.group_by(accepted.BATCH_ID).aggregate([("captured_at", "max")])
    keep = newest.filter(pc.greater_equal(newest["captured_at_max"], pa.scalar(cutoff, rows.schema.field("captured_at").type)))
    return rows.filter(pc.is_in(rows[accepted.BATCH_ID], value_set=keep[accepted.BATCH_ID]))


def table_snapshot(store: Store, task: Task, data_window_days: int | None = None, withdrawn: Revocations | None = None,
                   version: int | None = None, now: datetime | None = None) -> Snapshot | None:
    """The training dataset of `task` as a table version (the latest unless `version`), less the
    `withdrawn` batches and pseudonyms; None while nothing is left."""
    batch = schema.of(task)
    withdrawn = withdrawn or Revocations()
    dt = accepted.open_table(store, version)
    if dt is None:
        return None
    version = dt.version()
    rows = dt.to_pyarrow_table(columns=train_columns(task))
    i = rows.schema.get_field_index("captured_at")  # Delta keeps microseconds; the batches' unit is ms
    rows = rows.set_column(i, "captured_at", rows["captured_at"].cast(batch.schema.field("captured_at").type))
    rows = _within_window(rows, data_window_days, now)
    if withdrawn.batches:
        rows = rows.filter(pc.invert(pc.is_in(rows[accepted.BATCH_ID], pa.array(sorted(withdrawn.batches), pa.string()))))
    if not rows.num_rows:
        return None
    policies = _table_policies(store, set(pc.unique(rows["policy"]).to_pylist()), task)
    anonymized = [p for p in policies.values() if any(FORMS[f].enforces_k for f in p["forms"] if f in FORMS)]
    if anonymized:  # k needs the quasi-identifiers: read them too, and only then
        extra = dt.to_pyarrow_table(columns=[accepted.BATCH_ID, "window_id", *batch.device_columns])
        rows = rows.join(extra, [accepted.BATCH_ID, "window_id"])
    # a window shared twice counts once, by id or by content (the first by batch id, as the
    # batch-by-batch snapshot did); a withdrawn pseudonym's rows are left out
    frame = rows.sort_by([(accepted.BATCH_ID, "ascending")]).to_pandas()
    duplicates: dict = {}
    frame, removed = withdrawn.filter(frame)  # first: a withdrawn first copy must not take a later one with it
    frame = dedup_rows(frame, batch.feature_names, duplicates)
    if not len(frame):
        return None
    frame = frame.sort_values(["captured_at", "window_id"]).reset_index(drop=True)
    k_report = None
    if anonymized:
        k = max(p["k"] for p in anonymized)
        frame, k_report = enforce_k(frame, k, min(p["max_suppression"] for p in anonymized), batch.device_columns)
        if not len(frame):
            raise ValueError(f"k-anonymity: fewer than k={k} users in the accepted data; everything would be suppressed")
    batches = sorted(pc.unique(rows[accepted.BATCH_ID]).to_pylist())
    table_id = dt.metadata().id
    files = "\n".join(sorted(dt.file_uris()))
    revoked = "".join(f"\nrevoked:{rid}" for rid in withdrawn.ids)  # a withdrawal makes a new snapshot
    sid = f"v{version}-" + hashlib.sha256(f"{table_id}\n{version}\n".encode() + "\n".join(batches).encode()
                                          + revoked.encode()).hexdigest()[:10]
    manifest = {
        "snapshot_id": sid,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": len(frame),
        "users": int(frame["pseudonym"].nunique()),
        "label_counts": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()},
        "table": {"key": accepted.TABLE, "version": version, "table_id": table_id, "data_window_days": data_window_days},
        "data": {"key": accepted.TABLE, "sha256": hashlib.sha256(files.encode()).hexdigest(), "files": files.count("\n") + 1},
        "batches": batches,
        "policies": policies,
    }
    manifest["duplicates"] = duplicates  # rows counted once: how many by window id, by content, and whose
    if k_report is not None:
        manifest["k_anonymity"] = k_report
    if withdrawn.records:
        manifest["withdrawn"] = {"revocations": withdrawn.summary(), "rows_removed": removed}
    put_json(store, f"{DATASETS}{sid}/manifest.json", manifest, if_absent=True)  # what a release points back to
    return Snapshot(sid, frame, manifest, location=f"{accepted.TABLE}@v{version}")
