"""Across the two languages, over HTTP on 127.0.0.1: the Swift device shares its users' raw windows
through the gateway (`tandem-device share`), the server's train-and-release flow (what `tandem run`
runs) publishes, the Swift device pulls the release through the gateway (`tandem-device pull`: the
Ed25519 signature against the pinned key, every file's sha256), featurizes a user's later windows with
the release's feature_spec.json and predicts with its model: the same labels as the server's Python
runtime (`tandem/device/runtime.py`) and probabilities within 1e-6."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.contract import features as featurizations
from tandem.data import store_task
from tandem.data.store import store_from_settings
from tandem.device.runtime import DeviceModel
from tandem.fleet import devices
from tandem.fleet import users as fleet
from tandem.fleet.sharing import shared_mask
from tandem.gateway.server import ThreadedGateway
from tandem.privacy.policy import load_policy
from tandem.settings import Settings
from tests.flow_helpers import run_flow
from tests.swift_build import run_device

FRACTION = 0.8
HAR = tasks.resolve("har")  # what Settings() serves


def _windows_file(path: Path, user, rows: np.ndarray) -> Path:
    ms = user.captured_at.astype("datetime64[ms]").astype(np.int64)
    items = [{"key": user.window_keys[i], "captured_at": int(ms[i]), "label": str(user.labels[i]),
              "window": user.windows[i].tolist()} for i in rows]
    path.write_text(json.dumps({"user_id": user.user_id, "device": user.device, "windows": items}))
    return path


def test_swift_shares_server_publishes_swift_pulls_and_predicts_as_python(tandem_device, tandem_home, tmp_path):
    settings = Settings()
    store = store_from_settings(settings)
    everyone = fleet.synthetic_fleet(HAR, 8, windows_per_class=10, seed=1)
    sharers, evaluators = fleet.split_users(everyone, 4)
    spec = tmp_path / "app_feature_spec.json"  # what the app build ships with
    spec.write_text(json.dumps(featurizations.of(HAR).feature_spec()))
    policy = tmp_path / "policy.json"
    policy.write_text(load_policy("pseudonymized").public_json(HAR))

    with ThreadedGateway(settings, store) as gw:
        store_task.claim(store, HAR)
        shared = 0
        for n, user in enumerate(sharers):
            rows = np.flatnonzero(shared_mask(user, FRACTION))
            done = run_device(tandem_device, "share", "--gateway", gw.url, "--spec", str(spec), "--policy", str(policy),
                              "--windows", str(_windows_file(tmp_path / f"share-{n}.json", user, rows)), "--batch-size", "16")
            summary = json.loads(done.stdout)
            assert summary["windows"] == len(rows) and all(b["status"] == "landed" for b in summary["batches"])
            shared += len(rows)
        landed = store.list("incoming/")
        assert landed and len(store.list("gateway/idempotency/")) == len(landed)  # every batch came through the door
        # the team's side, as `tandem share` plays it: users who never share, and the reference set
        devices.write_evaluation_devices(settings.home, evaluators, settings.require_pseudonym_key(), settings.pseudonym_key_id)
        devices.register_reference(store, settings.model_name, evaluators)

        result = run_flow()
        assert result["status"] == "published", result
        assert result["accepted"] == len(landed) and result["quarantined"] == 0

        out = tmp_path / "pulled"
        run_device(tandem_device, "pull", "--gateway", gw.url, "--channel", "staging",
                   "--public-key", os.environ["TANDEM_RELEASE_PUBLIC_KEYS"], "--out", str(out))
    assert {"model.mlmodel", "feature_spec.json", "manifest.json"} <= {p.name for p in out.iterdir()}

    # a sharing user's later windows (those it kept), featurized and predicted on the device
    user = sharers[0]
    later = np.flatnonzero(~shared_mask(user, FRACTION))
    assert len(later) >= 3
    raw = tmp_path / "later.json"
    raw.write_text(json.dumps([user.windows[i].tolist() for i in later]))
    features = run_device(tandem_device, "featurize", "--spec", str(out / "feature_spec.json"), "--windows", str(raw)).stdout
    (tmp_path / "features.json").write_text(features)
    swift = json.loads(run_device(tandem_device, "predict", "--model", str(out / "model.mlmodel"),
                                  "--features", str(tmp_path / "features.json")).stdout)

    server = DeviceModel.load(out / "model.mlmodel")
    x = user.features[later]  # the server's featurization (numpy) of the same windows
    want = server.predict_proba(x)
    got = np.array(swift["probabilities"], dtype=np.float64)
    worst = float(np.abs(got - want).max())
    print(f"swift vs python runtime: {len(later)} windows, max |dp| = {worst:.3g}")
    assert worst <= 1e-6
    assert swift["labels"] == [str(v) for v in server.predict(x)]
    assert swift["class_labels"] == list(server.class_labels)
