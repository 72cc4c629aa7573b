"""The evaluation users: users who never share. Their data stays on their (simulated) devices under
``TANDEM_HOME/devices/<user>/`` (the experiments in `tandem.evaluation` score them there);
``local.parquet`` is in the shared-batch format (what `tandem device` commands take), ``raw.npz``
holds the same rows' raw sensor windows. The demo plays the team too: it registers these users'
recordings as the store's reference set (`tandem.data.reference`), which is all the production flow
reads to score candidates and cut golden vectors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tandem.contract import features
from tandem.data import reference, store_task
from tandem.data.reference import ReferenceUser
from tandem.data.store import Store
from tandem.fleet.sharing import ShareReport, share_user, window_ids, write_local_data
from tandem.fleet.users import UserData, split_users
from tandem.privacy import sealing
from tandem.privacy.policy import SharingPolicy
from tandem.privacy.pseudonyms import pseudonymize
from tandem.settings import Settings
from tandem.task import Task
from tandem.task.kinds import kind_of

INDEX = "evaluation.json"


EvalUser = ReferenceUser  # an evaluation user's device data, shaped as the server's reference set is


def devices_dir(home: Path) -> Path:
    return Path(home) / "devices"


def write_evaluation_devices(home: Path, users: list[UserData], key: bytes, key_id: str = "k1") -> Path:
    root = devices_dir(home)
    for user in users:
        folder = root / user.user_id
        folder.mkdir(parents=True, exist_ok=True)
        order = np.argsort(user.captured_at, kind="stable")
        write_local_data(_reordered(user, order), folder / "local.parquet", key, key_id)
        np.savez_compressed(folder / "raw.npz", windows=user.windows[order],
                            window_keys=np.array([user.window_keys[i] for i in order]))
    (root / INDEX).write_text(json.dumps({"users": [u.user_id for u in users]}, indent=2))
    return root


def _reordered(user: UserData, order: np.ndarray) -> UserData:
    return UserData(user.user_id, user.windows[order], user.labels[order], [user.window_keys[i] for i in order],
                    user.captured_at[order], user.device, task=user.task)


def load_evaluation(home: Path, task: Task) -> list[EvalUser]:
    """The evaluation users' device data, read as `task` (the task they were shared under) says."""
    feature_names, kind = list(features.of(task).feature_names), kind_of(task)
    root = devices_dir(home)
    index = root / INDEX
    if not index.exists():
        raise FileNotFoundError(f"no evaluation users under {root}: run `tandem share` first")
    users = []
    for user_id in json.loads(index.read_text())["users"]:
        frame = pq.read_table(root / user_id / "local.parquet").to_pandas()
        raw = np.load(root / user_id / "raw.npz")
        users.append(EvalUser(user_id, frame[feature_names].to_numpy(np.float64), kind.labels(frame["label"].to_numpy()),
                              raw["windows"], raw["window_keys"].tolist(),
                              frame["captured_at"].to_numpy().astype("datetime64[ms]")))
    return users


@dataclass
class FleetShare:
    report: ShareReport
    sharers: list[UserData]
    evaluators: list[UserData]


def share_fleet(settings: Settings, store: Store, everyone: list[UserData], *, fraction: float, holdout_every: int,
                batch_size: int, policy: SharingPolicy, on_user=None, via: str | None = None) -> FleetShare:
    """The simulated fleet's upload, in one place (the CLI and the tests call it): every
    `holdout_every`-th user never shares and keeps its data on its device; each other user shares
    `fraction` of its windows into the landing zone under `policy` (through the gateway at `via`, if given)."""
    key, key_id = settings.require_pseudonym_key(), settings.pseudonym_key_id
    seal_with = sealing.sealing_key(settings) if policy.sealed else None
    sharers, evaluators = split_users(everyone, holdout_every)
    if not sharers or not evaluators:
        raise ValueError(f"{len(everyone)} users with every {holdout_every}th held out leaves "
                         f"{len(sharers)} sharing and {len(evaluators)} evaluation users: both must be at least 1")
    store_task.claim(store, everyone[0].task)
    report = ShareReport()
    for user in sharers:
        share_user(store, user, fraction, key, key_id, batch_size, policy=policy, report=report,
                   ledger_dir=settings.devices_dir, seal_with=seal_with, via=via)
        if on_user:
            on_user(user)
    write_evaluation_devices(settings.home, evaluators, key, key_id)
    register_reference(store, settings.model_name, evaluators, key)
    return FleetShare(report, sharers, evaluators)


def register_reference(store: Store, model: str, users: list[UserData], key: bytes | None = None) -> dict:
    """The team's side of the demo: the never-sharing users' recordings become the store's reference set,
    under test-device names (a raw user id never enters the store); with the devices' `key`, also their
    pseudonyms and window ids, so their uploads are known by identity where values repeat genuinely."""
    recordings = {f"test-device-{i:02d}": {"windows": u.windows, "labels": u.labels, "window_keys": u.window_keys,
                                           "captured_at": u.captured_at} for i, u in enumerate(users)}
    if key is not None:
        for i, u in enumerate(users):
            recordings[f"test-device-{i:02d}"].update(pseudonyms=[pseudonymize(u.user_id, key)] * len(u),
                                                      window_ids=window_ids(u, np.arange(len(u)), key))
    return reference.add(store, model, reference.recordings_bytes(recordings), users[0].task,
                         source="tandem share (simulated test devices)")
