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


def test_the_audit_runs_on_a_seven_class_task_of_a_teams_own(tmp_path):
    """Issue 17: the audit's class count and feature names were HAR's. On a task made here (7 classes,
    its own features), run in the same process as HAR's tasks: the label mechanism spends its budget
    over 7 classes, and a release of HAR's features that the task does not have is skipped and said so."""
    from tandem import task as tasks
    from tandem.evaluation.privacy_audit import AuditParams, LdpPoint, run_audit

    folder = tmp_path / "seven"
    assert CliRunner().invoke(app, ["init", str(folder)]).exit_code == 0
    text = (folder / "task.yaml").read_text()
    assert "labels: [still, sway, shake]" in text
    (folder / "task.yaml").write_text(text.replace("labels: [still, sway, shake]",
                                                   "labels: [still, sway, rock, walk, jog, run, shake]"))
    task = tasks.resolve(str(folder))
    params = AuditParams.quick().model_copy(update={
        "synthetic_users": 6, "laplace_window_epsilons": [], "dp_sgd_epsilons": [],
        "ldp": [LdpPoint(user_epsilon=8.0), LdpPoint(user_epsilon=8.0, low_dim=True)]})
    result = run_audit(task, params, log=lambda *_: None)
    forms = {r["form"]: r for r in result["forms"]}
    assert set(forms) == {"pseudonymized", "anonymized", "ldp-piecewise u8 m12"}
    assert forms["ldp-piecewise u8 m12"]["user_epsilon_max"] == pytest.approx(8.0, abs=0.01)
    assert len(result["skipped"]) == 1 and "low_dim" in result["skipped"][0]
    for r in result["forms"]:
        assert 0.0 <= r["generic"] <= 1.0 and r["reid_chance"] == pytest.approx(1 / 4)  # 4 sharing users of 6
