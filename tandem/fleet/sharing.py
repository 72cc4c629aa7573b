"""The devices' upload: each sharing user shares a fraction of their windows as batches in
``incoming/dt=<upload day>/<device>/``, featurized, in the shared-batch format and in the modified form its sharing policy
declares (`tandem.privacy.policy`: pseudonymized, and optionally anonymized, dp, encrypted), for the
task the user's data was recorded for (`UserData.task`).

Deterministic: which windows a user shares, how they are cut into batches and the batch ids depend
only on the data and the key, and every upload is a create-only write, so sharing the same windows
again writes nothing new.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tandem.contract import schema
from tandem.data.landing import upload_key
from tandem.data.store import Store
from tandem.fleet.gateway_client import Device, install_key
from tandem.fleet.users import UserData
from tandem.privacy import sealing
from tandem.privacy.ledger import PrivacyLedger
from tandem.privacy.policy import SharingPolicy, apply_device_policy, load_policy
from tandem.privacy.pseudonyms import pseudonymize

DEFAULT_POLICY = "pseudonymized/v1"


@dataclass
class ShareReport:
    written: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    windows: int = 0
    users: int = 0
    withheld: int = 0  # windows not shared because the user's privacy budget is spent (dp)
    refusals: list[str] = field(default_factory=list)  # one line per user past the budget (device-side)


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def shared_mask(user: UserData, fraction: float) -> np.ndarray:
    """Which of a user's windows are shared: a stable pseudo-random `fraction` of them."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the shared fraction must be within [0, 1], got {fraction}")
    return np.array([_unit_hash(f"{user.user_id}|{k}") < fraction for k in user.window_keys], dtype=bool)


def window_ids(user: UserData, rows: np.ndarray, key: bytes) -> list[str]:
    pseudonym = pseudonymize(user.user_id, key)
    return [hashlib.sha256(f"{pseudonym}|{user.window_keys[i]}".encode()).hexdigest()[:32] for i in rows]


def batch_table(user: UserData, rows: np.ndarray, key: bytes, key_id: str,
                policy: "str | SharingPolicy" = DEFAULT_POLICY) -> pa.Table:
    """The given rows of one user's windows in its task's shared-batch format, in the policy's modified
    form (the policy's public JSON in the schema metadata)."""
    policy = load_policy(policy)
    task = user.require_task()
    batch = schema.of(task)
    pseudonym = pseudonymize(user.user_id, key)
    n = len(rows)
    columns = {
        "pseudonym": [pseudonym] * n,
        "key_id": [key_id] * n,
        "window_id": window_ids(user, rows, key),
        "captured_at": user.captured_at[rows],
        **{name: user.features[rows, j] for j, name in enumerate(batch.feature_names)},
        "label": user.labels[rows].tolist(),
        **{name: [user.device[name]] * n for name in batch.device_columns},
        "policy": [policy.name] * n,
    }
    return apply_device_policy(pa.Table.from_pydict(columns, schema=batch.schema), policy, key, task)


def table_bytes(table: pa.Table) -> bytes:
    """A batch file as the device uploads it. Snappy and no dictionary pages: a batch is a few dozen
    rows of distinct floats, which neither zstd nor a dictionary shrinks (measured on 64 rows: 126 KB
    this way, 138 KB with zstd and dictionaries), while both cost the server a decoder per column
    chunk (reading was 4x slower)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)
    return sink.getvalue()


def shared_rows(user: UserData, fraction: float, policy: SharingPolicy, key: bytes, ledger=None) -> np.ndarray:
    """The rows a user shares, in capture order: the stable `fraction`, and under the dp form only
    those the user's privacy ledger has charged already or can still afford."""
    rows = np.flatnonzero(shared_mask(user, fraction))
    rows = rows[np.argsort(user.captured_at[rows], kind="stable")]
    if ledger is not None and policy.charged:
        ids = window_ids(user, rows, key)
        allowed = set(ledger.affordable(policy, ids, len(user.featurization.classes)))
        rows = rows[np.array([w in allowed for w in ids], dtype=bool)] if len(rows) else rows
    return rows


def share_user(store: Store, user: UserData, fraction: float, key: bytes, key_id: str = "k1",
               batch_size: int = 64, policy: "str | SharingPolicy" = DEFAULT_POLICY, report: ShareReport | None = None,
               ledger_dir: Path | None = None, seal_with: tuple[str, bytes] | None = None,
               via: str | None = None) -> ShareReport:
    """Share one user's windows. Under dp, the user's privacy ledger (``<ledger_dir>/<user>/``,
    the device's own files) is charged before anything is uploaded; under encrypted, each batch is
    sealed with `seal_with` (key id, key) and uploaded as ``<batch>.sealed``. With `via` (a gateway URL)
    the device enrolls its install key (kept in ``<ledger_dir>/<user>/``) and uploads each batch in wire
    format v1 through the gateway instead of writing to the store."""
    report = report or ShareReport()
    policy = load_policy(policy)
    policy.check(user.require_task())
    if policy.charged and ledger_dir is None:
        raise ValueError(f"sharing under {policy.name} needs the device's privacy ledger folder (ledger_dir)")
    ledger = PrivacyLedger.load(ledger_dir, user.user_id) if policy.charged else None
    rows = shared_rows(user, fraction, policy, key, ledger)
    if ledger is not None:
        withheld = int(shared_mask(user, fraction).sum()) - len(rows)
        report.withheld += withheld
        ledger.charge(policy, window_ids(user, rows, key), len(user.featurization.classes))
        ledger.save()  # charged before the release: a failed upload never under-counts
        if withheld:
            spent = ledger.spent(policy.delta)
            report.refusals.append(
                f"device {pseudonymize(user.user_id, key)[:8]}: privacy budget reached (epsilon {spent:.2f} of "
                f"{policy.user_budget_epsilon:g} at delta {policy.delta:g}); {withheld} window(s) not shared")
    seal_key = None
    if policy.sealed:
        if seal_with is None:
            raise RuntimeError("the encrypted form needs a sealing key: set TANDEM_ENCRYPTION_KEY")
        seal_id, seal_key = seal_with
        if policy.encryption_key_id and policy.encryption_key_id != seal_id:
            raise RuntimeError(f"the policy seals with key {policy.encryption_key_id!r}, but "
                               f"TANDEM_ENCRYPTION_KEY_ID names {seal_id!r}")
    device = Device(via, install_key(Path(ledger_dir) / user.user_id if ledger_dir else None)) if via else None
    for start in range(0, len(rows), batch_size):
        table = batch_table(user, rows[start:start + batch_size], key, key_id, policy)
        pseudonym = table.column("pseudonym")[0].as_py()
        ids = "|".join(table.column("window_id").to_pylist())
        batch_id = hashlib.sha256(f"{pseudonym}|{ids}".encode()).hexdigest()[:24]
        if device is not None:
            answer = device.upload(table, batch_id, (seal_id, seal_key) if seal_key is not None else None)
            (report.written if answer["status"] == "landed" else report.already_there).append(answer["batch"])
            report.windows += table.num_rows
            continue
        data = table_bytes(table)
        if seal_key is not None:
            data = sealing.seal(data, seal_key, seal_id)
        # the upload day's folder: the server lists only the days it has not finished (tandem.data.landing)
        object_key = upload_key(pseudonym[:16], batch_id, sealing.SEALED_SUFFIX if seal_key is not None else ".parquet")
        if store.put(object_key, data, if_absent=True):
            report.written.append(object_key)
        else:
            report.already_there.append(object_key)
        report.windows += table.num_rows
    if device is not None:
        device.client.close()
    report.users += 1
    return report


def share(store: Store, users: list[UserData], fraction: float, key: bytes, key_id: str = "k1",
          batch_size: int = 64, policy: "str | SharingPolicy" = DEFAULT_POLICY, on_user=None,
          ledger_dir: Path | None = None, seal_with: tuple[str, bytes] | None = None) -> ShareReport:
    report = ShareReport()
    for user in users:
        share_user(store, user, fraction, key, key_id, batch_size, policy, report, ledger_dir=ledger_dir,
                   seal_with=seal_with)
        if on_user:
            on_user(user)
    return report


def write_local_data(user: UserData, path, key: bytes, key_id: str = "k1") -> None:
    """All of a user's windows in the batch format: the data the device keeps locally."""
    pq.write_table(batch_table(user, np.arange(len(user)), key, key_id), path)
