"""Gates, promotion and rollback through the real flow (Prefect ephemeral, MLflow SQLite, local store)."""

from __future__ import annotations

import numpy as np
from mlflow import MlflowClient

from tandem import task as tasks
from tandem.data.store import store_from_settings
from tandem.device.runtime import DeviceModel
from tandem.fleet import users as fleet
from tandem.release import channels
from tandem.release.gates import GATES, GateInputs
from tandem.release.layout import list_releases, read_channel
from tandem.release.params import RunParams
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task.kinds import kind_of
from tandem.training import model, pretrain
from tests.flow_helpers import run_flow, share_synthetic


def agree(settings, store, channel) -> str | None:
    """Where `channel` points; asserts MLflow's alias and the store's pointer agree."""
    state = channels.channel_state(Tracker(settings), store, channel)
    assert state["store"] == state["mlflow"], state
    return state["store"]


def test_worse_candidate_is_blocked_and_promote_rollback_move_alias_and_channel_together(tandem_home):
    settings = Settings()
    share_synthetic(settings)
    store = store_from_settings(settings)

    v1 = run_flow()
    assert v1["status"] == "published"
    channels.promote(Tracker(settings), store)
    assert agree(settings, store, "production") == v1["version"]

    worse = run_flow(train={"epochs": 1, "hidden_sizes": [8]}, force=True)
    assert worse["status"] == "blocked"
    assert any(r.startswith("comparison: accuracy") for r in worse["reasons"]), worse["reasons"]
    tags = MlflowClient(settings.tracking_uri).get_model_version(settings.model_name, worse["version"]).tags
    assert tags["gate"] == "blocked"
    assert worse["version"] not in [m["version"] for m in list_releases(store, settings.model_name)]
    assert agree(settings, store, "staging") == v1["version"]

    v3 = run_flow(force=True)
    assert v3["status"] == "published" and v3["gates"]["comparison"]["production_version"] == v1["version"]
    channels.promote(Tracker(settings), store)
    assert agree(settings, store, "production") == v3["version"]
    assert read_channel(store, settings.model_name, "production")["history"][0] == v1["version"]

    channels.rollback(Tracker(settings), store)
    assert agree(settings, store, "production") == v1["version"]


def test_parity_failure_blocks_the_release_and_says_why(tandem_home):
    """A tolerance no float32 model can meet: the parity gate must stop the release."""
    settings = Settings()
    share_synthetic(settings, n_users=4)
    outcome = run_flow(gates={"parity_tolerance": 1e-15})
    assert outcome["status"] == "blocked"
    assert any(r.startswith("parity: max |runtime - torch|") for r in outcome["reasons"])
    assert list_releases(store_from_settings(settings), settings.model_name) == []
    assert read_channel(store_from_settings(settings), settings.model_name, "staging") is None


def test_a_failed_alias_write_leaves_the_channel_as_it_was(tandem_home, monkeypatch):
    """Fault injection: the MLflow registry refuses the alias (an outage we cannot cause for real)."""
    import pytest

    settings = Settings()
    share_synthetic(settings)
    store = store_from_settings(settings)
    v1 = run_flow()
    channels.promote(Tracker(settings), store)
    v2 = run_flow(force=True)
    assert v2["status"] == "published"

    def refuse(*args, **kwargs):
        raise ConnectionError("registry unavailable")

    with monkeypatch.context() as fault:
        fault.setattr(MlflowClient, "set_registered_model_alias", refuse)
        with pytest.raises(ConnectionError):
            channels.promote(Tracker(settings), store)
    assert agree(settings, store, "production") == v1["version"]


def test_the_update_gate_updates_with_the_tasks_device_batch_size():
    """Issue 17: the release's update gate personalized with a hard-coded mini-batch of 8 whatever the
    task's `device.batch_size` said. The gate's policy is the task's; the gates run from one registry."""
    har = tasks.resolve("har")
    small_batch = har.model_copy(update={"device": har.device.model_copy(update={"batch_size": 2})})
    users = fleet.synthetic_fleet(small_batch, 3, windows_per_class=8, seed=0)
    X = np.concatenate([u.features for u in users])
    y = kind_of(har).targets(np.concatenate([u.labels for u in users]))
    params = RunParams.for_task(small_batch, {"train": {"epochs": 3, "hidden_sizes": [16]},
                                              "gates": {"personalization_labels": 12, "personalization_users": 2}})
    result = model.train(X, y, params.train, n_classes=len(kind_of(har).classes))
    device = DeviceModel.load(pretrain.convert(small_batch, result, params, {}))
    assert list(GATES) == ["rules", "parity", "update", "comparison", "membership"]
    seen = {}
    for task in (small_batch, har):
        summary = GATES["update"].judge(GateInputs(task, device, result, users, users, params.gates), {})
        assert summary["mini_batch_size"] == task.device.batch_size
        seen[task.device.batch_size] = summary["per_user"]
    assert seen[2] != seen[8]  # the batch size reached the updates, not only the report
    for per_user in seen.values():  # the gate's evidence counts are the score change, window by window
        for u in per_user.values():
            assert np.isclose(u["after"] - u["before"], (u["windows_better"] - u["windows_worse"]) / u["windows"])


def test_the_update_gate_blocks_a_drop_only_on_evidence():
    """CI run of stop 26: two evaluation users, one window of 30 went wrong after an update, and the
    release was blocked (0.983 -> 0.967). One window is noise; a broken update breaks many and fixes none."""
    from tandem.release.gates.update import harm_p_value

    assert harm_p_value(1, 0) == 0.5 and harm_p_value(0, 0) == 1.0
    assert harm_p_value(6, 0) < 0.05 and harm_p_value(6, 6) > 0.05
    assert harm_p_value(12, 2) < 0.05 < harm_p_value(7, 3)


def test_a_broken_update_is_blocked_with_its_evidence():
    """A learning rate of 1 with no acceptance check wrecks every updated user: the gate blocks and
    its reason counts the windows the update broke."""
    from tandem.device.update_policy import UpdatePolicy
    from tandem.release.gates.update import update_gate

    har = tasks.resolve("har")
    users = fleet.synthetic_fleet(har, 6, windows_per_class=10, seed=0)
    X = np.concatenate([u.features for u in users[:4]])
    y = kind_of(har).targets(np.concatenate([u.labels for u in users[:4]]))
    params = RunParams.for_task(har, {"train": {"epochs": 25, "hidden_sizes": [32, 32]}})
    device = DeviceModel.load(pretrain.convert(har, model.train(X, y, params.train, n_classes=6), params, {}))
    broken = UpdatePolicy(learning_rate=1.0, accept_margin=None, min_per_class=99, fallback_epochs=60)
    summary = update_gate(kind_of(har), device, users[4:], 20, policy=broken)
    assert not summary["passed"]
    assert summary["windows_worse"] > 10 * summary["windows_better"] and summary["harm_p_value"] < 0.05
