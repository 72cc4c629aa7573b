"""The devices' upload: each sharing user shares a fraction of their windows as batches in
``incoming/``, pseudonymized, featurized, in the shared-batch format.

Deterministic: which windows a user shares, how they are cut into batches and the batch ids depend
only on the data and the key, and every upload is a create-only write, so sharing the same windows
again writes nothing new.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tandem.features import FEATURE_NAMES
from tandem.fleet import UserData
from tandem.privacy import pseudonymize
from tandem.schema import BATCH_SCHEMA, DEVICE_COLUMNS
from tandem.storage import Store

DEFAULT_POLICY = "pseudonymized/v1"


@dataclass
class ShareReport:
    written: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    windows: int = 0
    users: int = 0


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def shared_mask(user: UserData, fraction: float) -> np.ndarray:
    """Which of a user's windows are shared: a stable pseudo-random `fraction` of them."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the shared fraction must be within [0, 1], got {fraction}")
    return np.array([_unit_hash(f"{user.user_id}|{k}") < fraction for k in user.window_keys], dtype=bool)


def batch_table(user: UserData, rows: np.ndarray, key: bytes, key_id: str, policy: str = DEFAULT_POLICY) -> pa.Table:
    """The given rows of one user's windows in the shared-batch format."""
    pseudonym = pseudonymize(user.user_id, key)
    n = len(rows)
    columns = {
        "pseudonym": [pseudonym] * n,
        "key_id": [key_id] * n,
        "window_id": [hashlib.sha256(f"{pseudonym}|{user.window_keys[i]}".encode()).hexdigest()[:32] for i in rows],
        "captured_at": user.captured_at[rows],
        **{name: user.features[rows, j] for j, name in enumerate(FEATURE_NAMES)},
        "label": user.labels[rows].tolist(),
        **{name: [user.device[name]] * n for name in DEVICE_COLUMNS},
        "policy": [policy] * n,
    }
    return pa.Table.from_pydict(columns, schema=BATCH_SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def share_user(store: Store, user: UserData, fraction: float, key: bytes, key_id: str = "k1",
               batch_size: int = 64, policy: str = DEFAULT_POLICY, report: ShareReport | None = None) -> ShareReport:
    report = report or ShareReport()
    rows = np.flatnonzero(shared_mask(user, fraction))
    rows = rows[np.argsort(user.captured_at[rows], kind="stable")]
    for start in range(0, len(rows), batch_size):
        table = batch_table(user, rows[start:start + batch_size], key, key_id, policy)
        pseudonym = table.column("pseudonym")[0].as_py()
        ids = "|".join(table.column("window_id").to_pylist())
        batch_id = hashlib.sha256(f"{pseudonym}|{ids}".encode()).hexdigest()[:24]
        object_key = f"incoming/{pseudonym[:16]}/{batch_id}.parquet"
        if store.put(object_key, table_bytes(table), if_absent=True):
            report.written.append(object_key)
        else:
            report.already_there.append(object_key)
        report.windows += table.num_rows
    report.users += 1
    return report


def share(store: Store, users: list[UserData], fraction: float, key: bytes, key_id: str = "k1",
          batch_size: int = 64, policy: str = DEFAULT_POLICY, on_user=None) -> ShareReport:
    report = ShareReport()
    for user in users:
        share_user(store, user, fraction, key, key_id, batch_size, policy, report)
        if on_user:
            on_user(user)
    return report


def write_local_data(user: UserData, path, key: bytes, key_id: str = "k1") -> None:
    """All of a user's windows in the batch format: the data the device keeps locally."""
    pq.write_table(batch_table(user, np.arange(len(user)), key, key_id), path)
