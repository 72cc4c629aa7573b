"""The release states its privacy: the data's per-user guarantee, the model's (user-level DP-SGD)
and the measured membership AUC; a membership threshold blocks a release. Through the real flow
(Prefect ephemeral, MLflow SQLite, local store, GX validation)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tandem.data.store import store_from_settings
from tandem.release.layout import list_releases
from tandem.settings import Settings
from tests.flow_helpers import run_flow, share_synthetic

DP_SGD = {"enabled": True, "target_epsilon": 4.0, "delta": 1e-5, "steps": 30, "sample_rate": 0.5,
          "windows_per_user": 8, "learning_rate": 0.02}


def test_dp_sgd_release_states_both_guarantees_and_membership(tandem_home):
    settings = Settings()
    share_synthetic(settings)
    out = run_flow(dp_sgd=DP_SGD, gates={"min_accuracy": 0.0})
    assert out["status"] == "published", out
    store = store_from_settings(settings)
    [manifest] = list_releases(store, settings.model_name)
    privacy = manifest["privacy"]
    # pseudonymized sharing: the data carries no formal guarantee, and the manifest says so
    assert privacy["data"]["epsilon_max"] is None and privacy["data"]["users_without_dp"] == privacy["data"]["users"] > 0
    assert "no formal DP guarantee" in privacy["data"]["statement"]
    model = privacy["model"]
    assert model["epsilon"] == pytest.approx(4.0, rel=0.05) and model["delta"] == 1e-5
    assert model["unit"].startswith("user") and model["noise_multiplier"] > 0
    assert 0.0 <= privacy["membership"]["loss_auc"] <= 1.0
    run = MlflowClient(settings.tracking_uri).get_run(out["mlflow_run_id"])
    assert run.data.metrics["privacy_model_epsilon"] == pytest.approx(model["epsilon"])
    assert "privacy_membership_loss_auc" in run.data.metrics
    assert "DP-SGD" in run.data.tags["tandem.privacy.model"]


def test_membership_gate_blocks_a_release_above_its_threshold(tandem_home):
    settings = Settings()
    share_synthetic(settings)
    out = run_flow(gates={"max_membership_auc": 0.5})
    # a model fit to its users tells their windows from new users' better than a coin
    assert out["status"] == "blocked", out
    assert any(r.startswith("membership: loss-threshold AUC") for r in out["reasons"]), out["reasons"]
    assert list_releases(store_from_settings(settings), settings.model_name) == []
