"""`tandem audit --quick` through the real CLI: a report, an MLflow run, and attacks that tell the
forms apart (synthetic fleet, real MLflow SQLite store)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tandem.cli.main import app
from tandem.settings import Settings


def test_quick_audit_reports_every_form_with_guarantees_and_attacks(tandem_home):
    out = CliRunner().invoke(app, ["audit", "--quick"])
    assert out.exit_code == 0, out.output
    settings = Settings()
    result = json.loads((settings.home / "reports" / "audit.json").read_text())
    forms = {r["form"]: r for r in result["forms"]}
    assert set(forms) == {"pseudonymized", "anonymized", "dp-laplace-v1 w10", "ldp-piecewise u8 m12", "dp-sgd e8"}

    plain, ldp, sgd = forms["pseudonymized"], forms["ldp-piecewise u8 m12"], forms["dp-sgd e8"]
    assert plain["user_epsilon_max"] is None  # no DP: the table says so rather than printing a number
    assert ldp["user_epsilon_max"] == pytest.approx(8.0, abs=0.01) and ldp["user_epsilon_max"] <= 8.0 + 1e-6
    assert sgd["model_privacy"]["epsilon"] == pytest.approx(8.0, rel=0.05)
    # raw features name their user far above chance; the local DP form much less so
    assert plain["reid_top1"] >= 3 * plain["reid_chance"]
    assert ldp["reid_top1"] < plain["reid_top1"]
    # generalized quasi-identifiers: linking a batch no longer reveals the plain device model
    assert forms["anonymized"]["attribute"]["device_model"]["recovered"] == 0.0
    assert plain["attribute"]["device_model"]["recovered"] >= plain["reid_top1"] - 1e-9
    for r in result["forms"]:
        for k in ("mia_window_loss_auc", "mia_user_loss_auc", "mia_shadow_auc", "generic", "personalized"):
            assert 0.0 <= r[k] <= 1.0, (r["form"], k)

    md = (settings.home / "reports" / "audit.md").read_text()
    assert "| pseudonymized | ∞ (no DP) |" in md and "MIA shadow AUC" in md
    [run] = MlflowClient(settings.tracking_uri).search_runs(
        [MlflowClient(settings.tracking_uri).get_experiment_by_name("tandem/privacy-audit").experiment_id])
    assert run.data.metrics["ldp-piecewise_u8_m12.user_epsilon"] == pytest.approx(ldp["user_epsilon_max"])
    assert run.data.metrics["pseudonymized.reid_top1"] == pytest.approx(plain["reid_top1"])
