"""The rounds loop, FedAvg and the evaluation report, on the small synthetic fleet (fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tandem import task as tasks
from tandem.evaluation.experiment import HEADLINE, EvaluationParams, run_evaluation
from tandem.evaluation.report import write_report
from tandem.evaluation.simulation import simulate
from tandem.fleet import users as fleet
from tandem.release.params import RunParams
from tandem.training import model
from tandem.training.federated import Client, fedavg, federated_stats
from tandem.training.personalization import local_split, pick_labelled

FAST_TRAIN = model.TrainConfig(epochs=12, patience=4)
HAR = tasks.resolve("har")


@pytest.fixture(scope="module")
def users():
    sharers, evaluators = fleet.split_users(fleet.synthetic_fleet(HAR, 10, 16, seed=0), 5)
    return sharers, evaluators


@pytest.fixture(scope="module")
def evaluation():
    params = EvaluationParams.quick().model_copy(update={"curve_fractions": [0.5], "curve_epsilons": [], "curve_ks": [2], "train": FAST_TRAIN})
    return run_evaluation(HAR, params, log=lambda *_: None)


def test_local_split_is_disjoint_and_covers_every_activity(users):
    user = users[1][0]
    pool, test = local_split(user, 0.5)
    assert not set(pool) & set(test)
    assert set(user.labels[pool]) == set(user.labels[test]) == set(user.labels)
    lab = pick_labelled(user.labels, pool, per_user=10)
    assert len(lab) <= 10 and set(lab) <= set(pool)
    assert len(pick_labelled(user.labels, pool, per_class=2)) == 2 * len(set(user.labels))


def test_rounds_share_more_and_record_generic_accuracy_of_never_sharing_users(users, tmp_path):
    sharers, evaluators = users
    sim = simulate(HAR, sharers, evaluators, rounds=2, run_params=RunParams(train=FAST_TRAIN), per_user_budget=12,
                   update_overrides={"epochs": 30, "learning_rate": 0.03}, home=tmp_path)
    assert [r["round"] for r in sim.rounds] == [0, 1]
    assert sim.rounds[0]["sharing_users"] < sim.rounds[1]["sharing_users"] == len(sharers)
    assert sim.rounds[0]["snapshot_rows"] < sim.rounds[1]["snapshot_rows"]
    for r in sim.rounds:
        assert set(r["generic"]["per_user"]) == {u.user_id for u in evaluators}
        assert 0.0 <= r["generic"]["mean"] <= 1.0
        assert r["quarantined"] == 0 and r["accepted"] == r["new_batches"] > 0
    # the second round restores every backup on the old base, then re-personalizes the new base
    assert sim.rounds[1]["backups"] == {"restored": len(sharers) + len(evaluators),
                                        "repersonalized": len(sharers) + len(evaluators)}
    # evaluation users never share: no batch carries their pseudonym's windows
    shared = {d.user.user_id for d in sim.devices if d.shared}
    assert shared == {u.user_id for u in sharers}


def test_personalization_helps_synthetic_users_on_a_weak_base(users, tmp_path):
    sharers, evaluators = users
    sim = simulate(HAR, sharers[:2], evaluators, rounds=1, run_params=RunParams(train=model.TrainConfig(epochs=3, patience=2)),
                   per_user_budget=12, update_overrides={"epochs": 50, "learning_rate": 0.03}, home=tmp_path)
    r = sim.rounds[0]
    assert r["personalized"]["mean"] > r["generic"]["mean"]
    assert r["personalization_harmed"] <= 0.2


def test_fedavg_runs_and_learns(users):
    sharers, evaluators = users
    y = lambda u: np.array([["laying", "sitting", "standing", "walking", "walking_downstairs", "walking_upstairs"].index(l)
                            for l in u.labels])
    clients = [Client(u.features, y(u)) for u in sharers]
    mean, std = federated_stats(clients)
    X = np.concatenate([c.X for c in clients])
    assert np.allclose(mean, X.mean(0)) and np.allclose(std, X.std(0), rtol=1e-6)
    result = fedavg(clients, n_classes=6, rounds_per_call=3)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    pred = model.predict_proba(result.model, evaluators[0].features).argmax(1)
    assert (pred == y(evaluators[0])).mean() > 0.5


def test_evaluation_json_has_every_method_per_user_and_round(evaluation, tmp_path):
    result = evaluation
    evaluators = result["users"]["evaluation"]
    budget = result["params"]["per_user_budget"]
    expected = {"generic", HEADLINE, f"local_only_u{budget}", "fedavg", f"fedavg_{HEADLINE}", "central",
                f"central_{HEADLINE}", *(f"personalized_pc{n}" for n in result["params"]["per_class_budgets"])}
    assert expected <= set(result["methods"])
    for m in result["methods"].values():
        assert set(m["per_user"]) == set(evaluators) and 0 <= m["mean"] <= 1
    assert result["methods"][HEADLINE]["max_labelled"] <= budget
    assert len(result["rounds"]) == result["params"]["rounds"]
    for r in result["rounds"]:
        for key in ("generic", "personalized", "fedavg", "personalization_helped", "personalization_harmed"):
            assert key in r
        assert set(r["personalized"]["per_user"]) == set(evaluators)
    assert [p["fraction"] for p in result["curves"]["fraction"]] == [0.5]
    assert "epsilon" in result["curves"] and "k" in result["curves"]
    rounds = result["rounds"]
    assert result["claims"]["generic_rises_across_rounds"] == (rounds[-1]["generic"]["mean"] > rounds[0]["generic"]["mean"])

    files = write_report(result, tmp_path / "reports")
    data = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    assert data["methods"].keys() == result["methods"].keys()
    md = (tmp_path / "reports" / "evaluation.md").read_text()
    for name in ("methods.png", "rounds.png", "gain_per_user.png", "privacy_fraction.png"):
        assert files[name].stat().st_size > 0 and name in md
    assert "| `generic` |" in md and "| `central` |" in md
