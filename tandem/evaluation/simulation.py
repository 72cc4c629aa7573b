"""The fleet over rounds: devices share, the server retrains, devices personalize, back up, upgrade.

Round r (0-based), with the sharing users split into waves that join one per round:

1. every device's local data grows: the r-th chunk of its local pool (capture order) arrives;
2. the sharing users of waves 0..r share the part of their available, not yet shared pool windows
   that `sharing.shared_mask` selects (the real `sharing.share_user`, into a LocalStore);
3. the server runs what the train-and-release flow runs: `ingest.discover` + the bulk ingest
   (Great Expectations validation, ledger, quarantine, table append), `snapshot.table_snapshot`, `pretrain.pretrain`
   and `pretrain.convert` -> the round's base .mlmodel;
4. every device first restores its encrypted backup against the base it has installed (an app
   reinstall), then installs the new base: `backup.reconcile` finds the backup incompatible and
   re-personalizes the new base with the device runtime on the user's labelled, unshared windows,
   and seals a new backup with a per-device key that exists only in memory.

The users in `evaluation` never share: their generic accuracy per round is the knowledge transfer of
the base to newcomers. Everything is scored on each user's held-out test windows (`local_split`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tandem import pipeline
from tandem.device import backup as device_backup
from tandem.device.runtime import DeviceModel
from tandem.fleet import sharing
from tandem.fleet.users import UserData
from tandem.privacy.pseudonyms import pseudonymize
from tandem.release.params import RunParams
from tandem.settings import Settings
from tandem.task import Task
from tandem.training import model
from tandem.training.personalization import local_split, pick_labelled, update_and_score

# ---- the evaluation protocol on one device ------------------------------------------------------

def subset(user: UserData, rows: np.ndarray) -> UserData:
    """The same device with only `rows` (features carried over, not recomputed)."""
    rows = np.asarray(rows, dtype=np.int64)
    sub = UserData(user.user_id, user.windows[rows], user.labels[rows], [user.window_keys[i] for i in rows],
                   user.captured_at[rows], user.device, task=user.task)
    sub.__dict__["features"] = user.features[rows]
    return sub


def accuracy(predictor, X: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(predictor.predict(X)) == np.asarray(labels)).mean())


def personalize_on(base: DeviceModel, user: UserData, train: np.ndarray, test: np.ndarray, **overrides) -> dict:
    """The device runtime's update on `train`, scored before/after on `test`."""
    p = update_and_score(base, user, train, test, **overrides)
    return {"model": p.model, "before": p.accuracy_before, "after": p.accuracy_after, "gain": p.gain,
            "n_labelled": p.n_train}


def help_harm(before: dict[str, float], after: dict[str, float], tolerance: float = 1e-9) -> dict:
    diffs = [after[u] - before[u] for u in before]
    n = max(len(diffs), 1)
    return {"helped": sum(d > tolerance for d in diffs) / n, "harmed": sum(d < -tolerance for d in diffs) / n,
            "unchanged": sum(abs(d) <= tolerance for d in diffs) / n}


# ---- the server side ------------------------------------------------------------------------------

SIMULATION_KEY_ID = "sim1"  # shaped like the key ids Tandem emits (k1, k2, ...): the ingest refuses others


def simulation_key(seed: int) -> bytes:
    """The simulated devices' pseudonym key: fixed per seed (pseudonyms decide pretraining's user-wise
    validation split, so a random key would make results irreproducible). Not a production secret."""
    return hashlib.sha256(f"tandem-simulation-pseudonym-key/{seed}".encode()).digest()


@dataclass
class ServerRound:
    base: DeviceModel
    mlmodel: bytes
    result: model.TrainResult
    snapshot_id: str
    rows: int
    users: int
    new_batches: int
    accepted: int
    quarantined: int
    seconds: float


def simulated_server(root: Path, task: Task) -> pipeline.Context:
    """A server of the simulation's own for the task: its store under `root`, nothing shared with TANDEM_HOME."""
    return pipeline.Context(Settings(home=root, store=str(root / "store"), task=str(task.folder)))


def server_round(ctx: pipeline.Context, run_params: RunParams, metadata: dict | None = None) -> ServerRound:
    """Ingest the new batches, snapshot all accepted data, pretrain and convert: the pipeline's steps."""
    t0 = time.perf_counter()
    refs = pipeline.discover_batches(ctx)
    entries = pipeline.ingest_chunk(ctx, refs) if refs else []  # one chunk, in this process: rounds are small
    snapshot = pipeline.snapshot_dataset(ctx)
    result = pipeline.pretrain_model(ctx, snapshot, run_params, run_id=None)
    mlmodel = pipeline.convert_model(ctx, result, run_params, {"snapshot": snapshot.snapshot_id, **(metadata or {})})
    return ServerRound(DeviceModel.load(mlmodel), mlmodel, result, snapshot.snapshot_id, len(snapshot.frame),
                       int(snapshot.manifest["users"]), len(entries),
                       sum(e["outcome"] == "accepted" for e in entries),
                       sum(e["outcome"] == "quarantined" for e in entries), time.perf_counter() - t0)


def share_and_train(task: Task, sharers: list[UserData], pools: dict[str, np.ndarray], fraction: float,
                    run_params: RunParams, key: bytes, policy=sharing.DEFAULT_POLICY, batch_size: int = 256,
                    workdir: str | os.PathLike | None = None) -> ServerRound:
    """One shot: every sharer shares `fraction` of its pool under `policy` into a fresh store; train.
    Each call is a world of its own: fresh store and fresh privacy ledgers (no budget carried over)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ctx = simulated_server(Path(tmp), task)
        for user in sharers:
            sharing.share_user(ctx.store, subset(user, pools[user.user_id]), fraction, key, SIMULATION_KEY_ID, batch_size,
                               policy=policy, ledger_dir=Path(tmp) / "devices")
        return server_round(ctx, run_params)


# ---- the rounds ---------------------------------------------------------------------------------

@dataclass
class Device:
    user: UserData
    pool: np.ndarray
    test: np.ndarray
    sharer: bool
    wave: int
    backup_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)  # in memory only
    shared: set = field(default_factory=set)
    backup: bytes | None = None
    installed: DeviceModel | None = None

    def available(self, round_index: int, rounds: int) -> np.ndarray:
        """Pool windows captured so far: the pool arrives in `rounds` chunks, in capture order."""
        order = self.pool[np.argsort(self.user.captured_at[self.pool], kind="stable")]
        return np.sort(np.concatenate(np.array_split(order, rounds)[:round_index + 1]))

    def unshared_pool(self) -> np.ndarray:
        return np.array([i for i in self.pool if int(i) not in self.shared], dtype=np.int64)


@dataclass
class SimulationResult:
    rounds: list[dict]
    final: ServerRound
    devices: list[Device]
    store_root: str


def make_devices(sharers: list[UserData], evaluators: list[UserData], rounds: int, test_fraction: float) -> list[Device]:
    devices = []
    for i, user in enumerate(sharers):
        pool, test = local_split(user, test_fraction)
        devices.append(Device(user, pool, test, True, i % rounds))
    for user in evaluators:
        pool, test = local_split(user, test_fraction)
        devices.append(Device(user, pool, test, False, -1))
    return devices


def simulate(task: Task, sharers: list[UserData], evaluators: list[UserData], *, rounds: int = 3, fraction: float = 0.5,
             run_params: RunParams | None = None, update_overrides: dict | None = None, per_user_budget: int = 20,
             test_fraction: float = 0.5, batch_size: int = 256, seed: int = 0, policy=sharing.DEFAULT_POLICY,
             home: str | os.PathLike | None = None, on_round=None) -> SimulationResult:
    """Run the rounds; returns one record per round (see the module docstring) and the last base."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    run_params = run_params or RunParams.for_task(task)
    overrides = dict(update_overrides or {})
    key = simulation_key(seed)
    root = Path(home) if home else Path(tempfile.mkdtemp(prefix="tandem-sim-"))
    ctx = simulated_server(root, task)
    devices = make_devices(sharers, evaluators, rounds, test_fraction)
    records, previous, server = [], None, None
    for r in range(rounds):
        # 1-2. the devices of waves 0..r share their new windows
        shared_windows = 0
        for d in devices:
            if not d.sharer or d.wave > r:
                continue
            available = d.available(r, rounds)
            chosen = available[sharing.shared_mask(subset(d.user, available), fraction)]
            new = np.array([i for i in chosen if int(i) not in d.shared], dtype=np.int64)
            if len(new):
                report = sharing.share_user(ctx.store, subset(d.user, new), 1.0, key, SIMULATION_KEY_ID, batch_size, policy=policy,
                                            ledger_dir=root / "devices")
                shared_windows += report.windows
                d.shared.update(int(i) for i in new)
        # 3. the server
        server = server_round(ctx, run_params, {"round": r})
        # 4. the devices: restore the backup on the old base, then upgrade to the new one
        restored = repersonalized = 0
        generic, personal, part_generic, part_personal = {}, {}, {}, {}
        for d in devices:
            if d.backup is not None and previous is not None:
                device_backup.restore_backup(d.backup, key=d.backup_key, installed_base=previous.base)
                restored += 1
            labelled = pick_labelled(d.user.labels, d.unshared_pool(), per_user=per_user_budget)
            X, y = d.user.features, d.user.labels
            rec = device_backup.reconcile(d.backup, key=d.backup_key, new_base=server.base, X=X[labelled],
                                          y=y[labelled], **overrides)
            repersonalized += not rec.restored
            d.installed = rec.model
            d.backup = device_backup.create_backup(
                rec.model, base=server.base, base_version=f"round-{r}", pseudonym=pseudonymize(d.user.user_id, key),
                sample_count=len(labelled), key=d.backup_key, key_id="device")
            g = accuracy(server.base, X[d.test], y[d.test])
            p = accuracy(rec.model, X[d.test], y[d.test])
            if d.sharer:
                part_generic[d.user.user_id], part_personal[d.user.user_id] = g, p
            else:
                generic[d.user.user_id], personal[d.user.user_id] = g, p
        record = {
            "round": r,
            "sharing_users": sum(d.sharer and d.wave <= r for d in devices),
            "shared_windows": shared_windows,
            "snapshot": server.snapshot_id, "snapshot_rows": server.rows, "snapshot_users": server.users,
            "new_batches": server.new_batches, "accepted": server.accepted, "quarantined": server.quarantined,
            "base_sha256": server.base.sha256, "best_epoch": server.result.best_epoch,
            "server_seconds": round(server.seconds, 2),
            "generic": _summary(generic), "personalized": _summary(personal),
            **{f"personalization_{k}": v for k, v in help_harm(generic, personal).items()},
            "participants": {"generic": _summary(part_generic), "personalized": _summary(part_personal)},
            "backups": {"restored": restored, "repersonalized": repersonalized},
        }
        records.append(record)
        if on_round:
            on_round(record)
        previous = server
    return SimulationResult(records, server, devices, str(root))


def _summary(per_user: dict[str, float]) -> dict:
    values = list(per_user.values())
    return {"mean": float(np.mean(values)) if values else float("nan"), "per_user": dict(per_user)}

