"""The robust protocol: folds cover every user once, the statistics on hand-made numbers, and a
small real run (HAPT users 1-6, 2 folds x 2 seeds) through the Prefect flow into a real MLflow store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tandem.evaluation import protocol
from tandem.evaluation.protocol_data import fold_split
from tandem.training.device_update import policy_for


def test_every_user_never_shares_in_exactly_one_fold():
    users = list(range(30))
    seen = []
    for f in range(3):
        sharing, evaluation = fold_split(users, f, 3)
        assert len(evaluation) == 10 and not set(sharing) & set(evaluation)
        seen += evaluation
    assert sorted(seen) == users
    assert fold_split(users, 0, 3)[1] == [2, 5, 8, 11, 14, 17, 20, 23, 26, 29]  # the release split: users 03, 06, ...


def _runs():
    # two seeds, one fold, three users; method b = a + 0.02 for two users, - 0.01 for the third
    a = {0: {"u1": 0.90, "u2": 0.80, "u3": 0.70}, 1: {"u1": 0.92, "u2": 0.82, "u3": 0.72}}
    return [{"fold": 0, "seed": s, "methods": {"a": a[s], "b": {u: v + (0.02 if u != "u3" else -0.01) for u, v in a[s].items()}}}
            for s in (0, 1)]


def test_summary_and_paired_comparison_by_hand():
    s = protocol.summarize(_runs())
    assert s["a"]["mean"] == pytest.approx(0.81) and s["a"]["per_seed"] == pytest.approx([0.80, 0.82])
    assert s["a"]["sd_over_seeds"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
    d = protocol.paired(s, "b", "a")
    assert d["mean_points"] == pytest.approx(1.0)  # (2 + 2 - 1) / 3
    half = 4.303 * np.std([2, 2, -1], ddof=1) / np.sqrt(3)
    assert d["ci95_points"] == pytest.approx([1.0 - half, 1.0 + half])
    assert (d["a_better"], d["a_worse"], d["worse_share"]) == (2, 1, pytest.approx(1 / 3))
    assert (d["worse_mean_points"], d["worst_points"]) == (pytest.approx(-1.0), pytest.approx(-1.0))  # the harm's size
    assert protocol.harmed_share(_runs(), "b", "a") == pytest.approx(2 / 6)


def test_small_real_protocol_through_the_flow(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    from tandem import task as tasks
    from tandem.evaluation import robust_eval
    from tandem.fleet.users import task_fleet

    users = task_fleet(tasks.resolve("har"), users=list(range(1, 7)))
    small = dict(users=users, fl_rounds=2, budgets=("u20", "pc5", "pc20"))
    monkeypatch.setattr(robust_eval, "evaluate", lambda t, f, s, _e=robust_eval.evaluate, **kw: _e(t, f, s, **kw, **small))
    from flows.evaluate import evaluate_protocol

    out = evaluate_protocol(folds=2, seeds=2, audit=False)  # the audit has its own test (test_privacy_audit)
    result = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    c = result["claims"]
    assert (c["folds"], c["seeds"], c["users"]) == (2, 2, 6)
    assert {r["fold"] for r in result["runs"]} == {0, 1} and len(result["runs"]) == 4
    partial = (tmp_path / "reports" / "protocol_runs.2x2.jsonl").read_text().splitlines()
    assert len(partial) == 4  # each (fold, seed) kept as it finished: an interrupted run keeps what it measured
    assert set(c["personalization"]) == {"u20", "pc5", "pc20"}
    assert c["best_fl_baseline"] in ("fedavg", "fedprox", "fedper")
    assert 0.0 <= c["generic_mean"] <= 1.0 and c["generic_sd_over_seeds"] >= 0.0
    assert set(c["targets"]) >= {"generic_mean_at_least_0.95", "u20_harmed_at_most_10_percent", "u20_gain_ci95_above_0",
                                 "gain_grows_5_10_20_per_class"}
    # the gain's growth with labels: one step here (5 -> 20 per class), the paired per-user difference
    step = result["comparisons"]["personalized_pc20_vs_pc5"]
    assert set(c["growth"]) == {"pc20_vs_pc5"} and c["growth"]["pc20_vs_pc5"]["points"] == step["mean_points"]
    assert c["targets"]["gain_grows_5_10_20_per_class"] == (step["ci95_points"][0] > 0)
    for v in c["personalization"].values():  # the harm's size, and how often the phone kept the base
        assert v["harmed_worst_points"] <= v["harmed_mean_points"] <= 0.0 and 0.0 <= v["kept_base_share"] <= 1.0
        assert (v["harmed_mean_points"] < 0) == (v["harmed_share"] > 0)
    kept = [e == 0 for r in result["runs"] for e in r["info"]["epochs"]["tandem_u20"].values()]
    assert c["personalization"]["u20"]["kept_base_share"] == pytest.approx(sum(kept) / len(kept))
    policy = result["config"]["policy"]  # the task's policy, with its acceptance check in 3 folds
    assert (policy["accept_margin"], policy["holdout_folds"]) == (0.05, 3)
    # the MLflow run holds the table and plots
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.metrics["generic_mean"] == pytest.approx(c["generic_mean"])
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/evaluation.md", "report/evaluation.json", "report/budgets.png"} <= names


def test_one_harness_serves_a_classifier_then_a_regressor_in_one_process():
    """The same harness (`protocol.run_one`) and registry (`tandem.evaluation.methods`) for both kinds,
    two tasks one after the other: each run names the methods its kind compares, class counts come
    from the task (issue 17: `n_classes: int = 6`), a regressor is scored in its unit."""
    from tandem import task as tasks
    from tandem.evaluation.methods import METHODS
    from tandem.fleet.users import synthetic_fleet, task_fleet
    from tandem.release.params import DeviceUpdateConfig
    from tandem.task.kinds import kind_of
    from tandem.training.model import TrainConfig

    har, grunfeld = tasks.resolve("har"), tasks.resolve("grunfeld")
    for task in (har, grunfeld):
        assert set(kind_of(task).protocol_methods) <= set(METHODS)  # every method a kind names is registered
    quiet = lambda *_: None  # noqa: E731

    cfg = protocol.ProtocolConfig(policy=policy_for(har), folds=2, fl_rounds=1, budgets=("u20", "pc5"),
                                  fl_budgets=("u20",))
    run = protocol.run_one(har, synthetic_fleet(har, 4, 8, seed=0), 0, 0, cfg,
                           TrainConfig.for_task(har, epochs=3, patience=2), DeviceUpdateConfig.for_task(har), quiet)
    assert set(run["methods"]) == {"tandem_generic", "tandem_personalized_u20", "tandem_personalized_pc5",
                                   "local_only_u20", "local_only_pc5",
                                   *(f"{f}_{v}" for f in ("fedavg", "fedavg_all_local", "fedprox", "fedper")
                                     for v in ("generic", "personalized_u20"))}
    assert all(0.0 <= a <= 1.0 for per_user in run["methods"].values() for a in per_user.values())

    cfg = protocol.ProtocolConfig(policy=policy_for(grunfeld), folds=2, labelled_per_user=5)
    run = protocol.run_one(grunfeld, task_fleet(grunfeld), 1, 0, cfg, TrainConfig.for_task(grunfeld, epochs=5),
                           DeviceUpdateConfig.for_task(grunfeld), quiet)
    assert set(run["methods"]) == {f"{m}_{e}" for m in ("tandem_generic", "tandem_personalized", "own_mean", "local_only")
                                   for e in ("mae", "rmse")}
    assert all(v >= 0.0 for per_user in run["methods"].values() for v in per_user.values())


def test_runs_in_worker_processes_are_the_runs_of_one_process(tmp_path):
    """`tandem evaluate --workers 2`: the (fold, seed) runs in two spawned processes give exactly the
    per-user numbers of one process (torch on one thread in both), seed-major, each run kept in the
    partial file as it finishes."""
    import torch

    from tandem import task as tasks
    from tandem.fleet.users import synthetic_fleet
    from tandem.release.params import DeviceUpdateConfig
    from tandem.training.model import TrainConfig

    har = tasks.resolve("har")
    users = synthetic_fleet(har, 4, 8, seed=1)
    cfg = protocol.ProtocolConfig(policy=policy_for(har), folds=2, seeds=2, fl_rounds=1, budgets=("u20",),
                                  fl_budgets=("u20",))
    train = TrainConfig.for_task(har, epochs=3, patience=2)
    lines: list[str] = []
    partial = tmp_path / "runs.jsonl"
    parallel = protocol.run_protocol(har, users, cfg, lambda _fold: train, DeviceUpdateConfig.for_task(har),
                                     log=lines.append, partial=partial, workers=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = protocol.run_protocol(har, users, cfg, lambda _fold: train, DeviceUpdateConfig.for_task(har),
                                       log=lambda _line: None)
    finally:
        torch.set_num_threads(threads)
    assert [(r["seed"], r["fold"]) for r in parallel] == [(0, 0), (0, 1), (1, 0), (1, 1)]  # seed-major, as one process
    assert [r["methods"] for r in parallel] == [r["methods"] for r in serial]
    assert len({json.dumps(r["methods"], sort_keys=True) for r in parallel}) == 4  # four different runs, not one copied
    assert sorted(lines) == sorted(protocol.progress_line(r, "accuracy") for r in parallel)  # progress, one line per run
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    assert sorted((r["seed"], r["fold"]) for r in kept) == [(0, 0), (0, 1), (1, 0), (1, 1)]
