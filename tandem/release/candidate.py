"""A candidate model from tracking to release: evaluate it on the held-out pseudonyms (never trained
on) and the store's reference set (the team's test devices), pass it through the release gates,
publish it or mark it blocked. Nothing here reads anything but the store."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tandem.contract import features
from tandem.data import holdout, reference
from tandem.data.reference import ReferenceUser
from tandem.data.snapshot import Snapshot
from tandem.data.store import NotFound, Store, get_json, put_json
from tandem.data.store_keys import TRAINED
from tandem.device import knn
from tandem.privacy.privacy_manifest import data_guarantee, model_guarantee
from tandem.release import gates
from tandem.release.publish import mark_blocked, publish_release
from tandem.release.signing import Signer
from tandem.release.tracker import Tracker
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import metrics as evaluation
from tandem.training import model
from tandem.training.device_update import policy_for
from tandem.training.export import describe_updatable, load_spec


def release_spec(task: Task) -> dict:
    """feature_spec.json as a release ships it: the featurization, and the update policy the app runs
    around MLUpdateTask (with its acceptance margin), so the app and the gates run one rule."""
    return {**features.of(task).feature_spec(), "update_policy": policy_for(task).as_dict()}


def trained_record(store: Store, model_name: str, snapshot_id: str) -> dict | None:
    """What became of a snapshot already trained on (published or blocked), if anything."""
    try:
        return get_json(store, f"{TRAINED}{model_name}/{snapshot_id}.json")
    except NotFound:
        return None


def record_trained(store: Store, model_name: str, snapshot_id: str, outcome: dict) -> None:
    record = {k: outcome.get(k) for k in ("status", "version", "channel", "mlflow_run_id", "reasons")}
    record.update(outcome=outcome.get("status"), snapshot_id=snapshot_id,
                  recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # create-only: the run that published the snapshot first keeps the record
    put_json(store, f"{TRAINED}{model_name}/{snapshot_id}.json", record, if_absent=True)


def evaluation_key(index: int) -> str:
    """How per-user figures name an evaluation user: by position, never by the raw user id."""
    return f"eval-{index:02d}"


def holdout_share(settings, task: Task) -> float:
    """TANDEM_HOLDOUT_SHARE when set, else the task's `evaluation.holdout_share`."""
    return settings.holdout_share if "holdout_share" in settings.model_fields_set else task.evaluation.holdout_share


def training_rows(task: Task, snapshot: Snapshot, settings):
    """The snapshot's rows a candidate trains on: all but the held-out pseudonyms'."""
    return holdout.split(snapshot.frame, holdout_share(settings, task), settings.model_name)[0]


def start_tracking(tracker: Tracker, snapshot: Snapshot, params, summary: dict) -> str:
    run_id = tracker.start_run(
        run_name=f"train-{snapshot.snapshot_id}",
        params={"train": params.train.model_dump(), "device": params.device.model_dump(),
                "gates": params.gates.model_dump(),  # the thresholds a candidate was judged by
                "dp_sgd": params.dp_sgd.model_dump(), "channel": params.channel,
                "data_window_days": params.data_window_days, "snapshot_id": snapshot.snapshot_id,
                "dataset_rows": snapshot.manifest["rows"], "dataset_users": snapshot.manifest["users"]},
        tags={"tandem.snapshot": snapshot.snapshot_id, "tandem.model": tracker.model_name},
    )
    tracker.log_metrics(run_id, {"batches_new": summary["new_batches"], "batches_accepted": summary["accepted"],
                                   "batches_quarantined": summary["quarantined"]})
    return run_id


def evaluation_users(task: Task, store: Store, snapshot: Snapshot, settings) -> tuple[list[ReferenceUser], str]:
    """Who a candidate is scored and updated on: the held-out pseudonyms of the snapshot (never
    trained on), else, in a fleet too small to hold any out, the reference set. And which it was."""
    held_out = holdout.split(snapshot.frame, holdout_share(settings, task), settings.model_name)[1]
    users = holdout.as_users(held_out, task)
    if users:
        return users, "held-out pseudonyms"
    return reference.load(store, settings.model_name, task), "reference set"


def _scores(task: Task, result: model.TrainResult, users: list[ReferenceUser]) -> tuple[dict, np.ndarray, np.ndarray]:
    """The kind's metrics (accuracy and macro-F1, or MAE, RMSE and R^2) over the users' rows, and its
    headline per user (accuracy, or MAE)."""
    kind = kind_of(task)
    X = np.concatenate([u.features for u in users])
    y = np.concatenate([u.y for u in users])
    outputs = model.outputs(result.model, X)
    predicted = kind.predicted(outputs)  # class indices, or values
    metrics = kind.measure(y, predicted, evaluation)
    per_user, offset = {}, 0
    for i, u in enumerate(users):
        rows = slice(offset, offset + len(u.y))
        per_user[evaluation_key(i)] = kind.measure(u.y, predicted[rows], evaluation)[kind.headline]
        offset += len(u.y)
    return {**metrics, f"per_user_{kind.headline}": per_user, "n_users": len(users)}, y, predicted


def evaluate(task: Task, tracker: Tracker, store: Store, snapshot: Snapshot, result: model.TrainResult,
             run_id: str) -> dict:
    """The kind's release metrics and a plot (confusion matrix, or predicted vs true) on the
    evaluation users (`evaluation_users`), and the same on the reference set (the team's test
    devices) under ``reference_set``."""
    kind = kind_of(task)
    users, source = evaluation_users(task, store, snapshot, tracker.settings)
    metrics, y, predicted = _scores(task, result, users)
    ref, _, _ = _scores(task, result, reference.load(store, tracker.model_name, task))
    metrics["evaluated_on"] = source
    metrics["reference_set"] = {k: ref[k] for k in (*kind.release_metrics, "n_users")}
    tracker.log_metrics(run_id, {k: metrics[k] for k in kind.release_metrics}, prefix="eval_")
    tracker.log_metrics(run_id, {k: ref[k] for k in kind.release_metrics}, prefix="reference_")
    with tempfile.TemporaryDirectory() as tmp:
        png = kind.plot(y, predicted, evaluation, Path(tmp),
                        title=f"{source} ({kind.headline_label} {metrics[kind.headline]:.3f})")
        tracker.log_files(run_id, {png.name: png.read_bytes()}, "evaluation")
    return metrics


def gate_and_publish(task: Task, tracker: Tracker, store: Store, snapshot: Snapshot, result: model.TrainResult,
                     metrics: dict, mlmodel: bytes, params, run_id: str, signer: Signer) -> dict:
    kind = kind_of(task)
    users, _ = evaluation_users(task, store, snapshot, tracker.settings)
    test_devices = reference.load(store, tracker.model_name, task)
    ref = reference.latest_manifest(store, tracker.model_name)
    trained_on = training_rows(task, snapshot, tracker.settings)
    report = gates.run_gates(task, tracker.model_name, store, mlmodel, result, users, test_devices, params,
                             train_frame=trained_on)
    tracker.log_params(run_id, report.thresholds, prefix="gates.")  # the floors the baseline set, by name
    tracker.log_metrics(run_id, report.metrics, prefix="gate_")
    privacy = {"data": data_guarantee(snapshot.frame, snapshot.manifest.get("policies", {}), len(kind.classes)),
               "model": model_guarantee(result), "membership": report.summary["membership"]}
    tracker.log_metrics(run_id, {"data_user_epsilon_max": privacy["data"]["epsilon_max"],
                                 "model_epsilon": privacy["model"]["epsilon"],
                                 "membership_loss_auc": privacy["membership"].get("loss_auc")}, prefix="privacy_")
    tracker.set_tags(run_id, {"tandem.privacy.data": privacy["data"]["statement"],
                              "tandem.privacy.model": privacy["model"]["statement"]})
    personal = knn.release_files(mlmodel, task.device.knn_neighbors)
    files = {
        "model.mlmodel": mlmodel,
        **personal,
        "feature_spec.json": json.dumps(release_spec(task), indent=2).encode(),
        **report.files,
    }
    base = {"model": tracker.model_name, "mlflow_run_id": run_id, "mlflow_url": tracker.run_url(run_id),
            "metrics": _headline(metrics)}
    if not report.passed:
        tracker.log_files(run_id, {"model.mlmodel": mlmodel}, "coreml")
        version = mark_blocked(tracker, run_id, report.reasons)
        tracker.end_run(run_id, "FINISHED")
        return {**base, "status": "blocked", "version": version, "reasons": report.reasons, "gates": report.summary}
    spec = load_spec(mlmodel)
    manifest = publish_release(tracker, store, run_id, files, {
        "summary": kind.summary(metrics),
        "task": {"name": task.name, "version": task.version, "kind": task.kind, "tag": task.tag,
                 "digest": task.digest()},
        "reference_set": {k: ref.get(k) for k in ("version", "sha256", "rows", "devices")},  # what it was scored on
        "dataset": {"snapshot_id": snapshot.snapshot_id, "key": snapshot.key, "rows": snapshot.manifest["rows"],
                    "users": snapshot.manifest["users"], "sha256": snapshot.manifest["data"]["sha256"],
                    "batches": len(snapshot.manifest["batches"]),
                    "sharing_policies": snapshot.manifest.get("policies", {}),
                    "k_anonymity": snapshot.manifest.get("k_anonymity"),
                    "table": snapshot.manifest.get("table"),  # the table version trained on (time travel)
                    "withdrawn": snapshot.manifest.get("withdrawn")},
        "metrics": _headline(metrics),
        "class_labels": list(kind.classes),
        **({"target": dict(kind.target)} if kind.target is not None else {}),
        "coreml": describe_updatable(spec),
        **({"personal_models": {name: knn.describe(files[name]) for name in personal}} if personal else {}),
        "training": {"params": params.train.model_dump(), "dp_sgd": params.dp_sgd.model_dump(),
                     "best_epoch": result.best_epoch,
                     "epochs_run": len(result.history), "stopped_early": result.stopped_early},
        "gates": report.summary,
        "privacy": privacy,
    }, channel=params.channel, signer=signer)
    tracker.end_run(run_id)
    return {**base, "status": "published", "version": manifest["version"], "channel": params.channel,
            "release": f"releases/{tracker.model_name}/{manifest['version']}/", "gates": report.summary,
            "files": manifest["files"]}


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "mae", "rmse", "r2", "n", "n_users", "per_class_f1",
                                    "per_user_accuracy", "per_user_mae", "evaluated_on", "reference_set") if k in metrics}
