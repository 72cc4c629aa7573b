"""The app's update policy around MLUpdateTask: held-out rows, interleaving, early stopping by the
progress handler, the refit, keeping the base, and its golden trace replaying exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.device import golden
from tandem.device.runtime import DeviceModel
from tandem.device.update import update
from tandem.device.update_policy import (
    UpdatePolicy,
    acceptance,
    cross_entropy,
    holdout_rows,
    holdout_turns,
    interleave,
    lower_median,
    personalize,
    row_errors,
)

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def base():
    from tandem.training import export as coreml_export
    from tandem.training import model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)) + np.repeat(np.eye(3, 5) * 2, 30, axis=0)
    y = np.repeat(np.arange(3), 30)
    net = model.train(X, y, model.TrainConfig(hidden_sizes=[6], epochs=5, dropout=0.0, label_smoothing=0.0),
                      n_classes=3).model
    spec = coreml_export.to_updatable_mlmodel(net, LABELS, updatable_layers=["body.0", "head"],
                                              feature_names=[f"f{i}" for i in range(5)])
    return DeviceModel.load(spec.SerializeToString())


def data(n_per=6, shift=1.5, seed=1):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n_per, 5)) + np.eye(3, 5)[c] * 2 + shift for c in range(3)])
    return X, np.repeat(LABELS, n_per)


def test_holdout_is_the_latest_windows_of_each_activity_and_order_interleaves():
    y = np.array(["a"] * 6 + ["b"] * 3 + ["c"] * 4)
    assert holdout_rows(y, UpdatePolicy(holdout_every=3)).tolist() == [4, 5, 8, 11, 12]
    assert holdout_rows(y[:8], UpdatePolicy(min_per_class=3)).size == 0  # "b" has 2: no early stopping
    assert interleave(np.array(["b", "a", "a", "b", "c"])).tolist() == [1, 0, 4, 2, 3]


def test_progress_handler_can_cancel_the_task(base):
    X, y = data()
    seen = []
    result = update(base, X, y, on_epoch=lambda e, proba: seen.append((e, proba(X).shape)) or e == 3,
                    epochs=20, learning_rate=0.01, mini_batch_size=8)
    assert seen == [(1, (18, 3)), (2, (18, 3)), (3, (18, 3))] and len(result.history) == 3


def test_policy_stops_at_the_best_held_out_epoch_then_refits_on_everything(base):
    X, y = data()
    # no acceptance check here: this test is about the two tasks (the check is the next test's)
    policy = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, fallback_epochs=7, accept_margin=None)
    p = personalize(base, X, y, policy)
    losses = p.holdout_losses
    assert p.epochs == int(np.argmin(losses)) and p.epochs > 0
    assert len(losses) - 1 <= min(policy.max_epochs, p.epochs + policy.patience)  # cancelled `patience` after the best
    order = interleave(y)
    refit = update(base, X[order], y[order], epochs=p.epochs, learning_rate=0.05, mini_batch_size=8, shuffle=False)
    assert np.allclose(refit.model.predict_proba(X), p.model.predict_proba(X))
    assert p.loss_after < p.loss_before
    # too few labels per activity: no held-out split, the fallback epochs
    few = personalize(base, X[[0, 1, 6, 7, 12, 13]], y[[0, 1, 6, 7, 12, 13]], policy)
    assert few.epochs == 7 and few.holdout == []


def test_acceptance_counts_rows_made_better_minus_rows_made_worse():
    # a classifier's errors are 0/1: wrong -> right counts, right -> wrong takes one back
    check = acceptance([1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0], 0.1)
    assert check == {"better": 2, "worse": 1, "net": 1, "needed": 2, "accepted": False}  # ceil(0.1 * 11) = 2
    assert acceptance([1, 1, 0], [0, 0, 0], 0.1)["accepted"]  # max(1, ceil(0.3)) = 1
    assert not acceptance([1, 0], [1, 0], None)["net"] and acceptance([1, 0], [1, 0], None)["accepted"]  # no check
    # a regressor's absolute errors: rows whose error fell minus rows whose error rose
    assert acceptance([2.0, 1.0, 0.5], [1.0, 1.0, 0.7], 0.0) == {"better": 1, "worse": 1, "net": 0, "needed": 1,
                                                                  "accepted": False}
    assert row_errors(np.array([[0.2, 0.8], [0.5, 0.5]]), np.array(["y", "x"]), ["x", "y"]).tolist() == [0.0, 0.0]
    assert row_errors(np.array([1.5, 3.0]), np.array([1.0, 5.0]), []).tolist() == [0.5, 2.0]


def test_policy_ships_epoch_e_only_when_it_beats_the_base_on_enough_held_out_rows(base):
    policy = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5)
    assert policy.accept_margin == 0.1  # the measured default (docs/research/issue19)
    # epoch E lowers the held-out loss but fixes one held-out row and breaks another: the base stays
    X, y = data()
    p = personalize(base, X, y, policy)
    assert p.best_epoch > 0 and p.epochs == 0 and not p.acceptance["accepted"] and "the base is kept" in p.note
    errors = np.array(p.holdout_errors)
    assert errors.shape == (len(p.holdout_losses), len(p.holdout))
    assert p.acceptance["net"] == int((errors[p.best_epoch] < errors[0]).sum() - (errors[p.best_epoch] > errors[0]).sum())
    assert np.array_equal(p.model.predict_proba(X), base.predict_proba(X))
    order = interleave(y)  # epoch 0's errors are the base's on the held-out rows
    assert errors[0].tolist() == (base.predict(X[order][p.holdout]) != y[order][p.holdout]).astype(float).tolist()
    # more labels, and the update fixes several held-out rows: task B runs for E epochs
    X, y = data(n_per=7)
    p = personalize(base, X, y, policy)
    assert p.acceptance["accepted"] and p.acceptance["net"] >= p.acceptance["needed"] and p.epochs == p.best_epoch > 0
    assert not np.array_equal(p.model.predict_proba(X), base.predict_proba(X))


def test_policy_keeps_the_base_when_no_epoch_beats_it(base):
    # each activity's latest windows look like the next activity: training on the earlier ones only
    # makes the held-out loss worse, so task B must not run
    rng = np.random.default_rng(2)
    centers = [np.eye(3, 5)[c] * 2 for c in range(3)]
    X = np.concatenate([np.stack([centers[c] if i < 4 else centers[(c + 1) % 3] for i in range(6)])
                        + rng.normal(0, 0.2, size=(6, 5)) for c in range(3)])
    y = np.repeat(LABELS, 6)
    p = personalize(base, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=20, patience=3))
    assert p.epochs == 0 and min(p.holdout_losses[1:]) > p.holdout_losses[0]
    assert np.array_equal(p.model.predict_proba(X), base.predict_proba(X))
    order = interleave(y)
    assert p.holdout_losses[0] == pytest.approx(cross_entropy(base.predict_proba(X[order][p.holdout]),
                                                              y[order][p.holdout], base.class_labels))


def test_golden_policy_trace_replays(base):
    X, y = data(n_per=7)
    trace = golden.policy_trace(base, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=30, patience=4))
    again = personalize(base, np.array(trace["inputs"]), trace["labels"], UpdatePolicy.from_dict(trace["policy"]))
    assert again.epochs == trace["epochs"] and again.holdout == trace["holdout"]
    assert trace["acceptance"]["accepted"] and trace["best_epoch"] == trace["epochs"]
    assert np.array(trace["holdout_errors"]).shape == (len(trace["holdout_losses"]), len(trace["holdout"]))
    assert np.allclose(again.model.predict_proba(np.array(trace["inputs"])), trace["probabilities_after"], atol=1e-12)
    assert trace["holdout_losses"][trace["epochs"]] == min(trace["holdout_losses"])


def test_k_turns_hold_out_every_labelled_row_once_in_contiguous_blocks_per_class():
    y = np.array(["a"] * 7 + ["b"] * 3 + ["c"] * 4)
    turns = holdout_turns(y, UpdatePolicy(holdout_folds=3))
    assert [t.tolist() for t in turns] == [[0, 1, 2, 7, 10, 11], [3, 4, 8, 12], [5, 6, 9, 13]]  # array_split per class
    assert sorted(np.concatenate(turns).tolist()) == list(range(len(y)))
    assert [t.tolist() for t in holdout_turns(y, UpdatePolicy())] == [holdout_rows(y, UpdatePolicy()).tolist()]
    assert holdout_turns(y, UpdatePolicy(holdout_folds=4)) == []  # "b" has 3 < 4 rows: the fallback epochs
    assert [t.tolist() for t in holdout_turns(np.arange(5.0), UpdatePolicy(holdout_folds=2))] == [[0, 1, 2], [3, 4]]
    assert lower_median([5, 0, 9]) == 5 and lower_median([4, 2, 8, 6]) == 4 and lower_median([7]) == 7


def test_k_turns_sum_the_net_counts_and_refit_for_the_lower_median_epoch(base):
    X, y = data(n_per=7)
    policy = UpdatePolicy(learning_rate=0.05, max_epochs=30, patience=4, holdout_folds=3)
    p = personalize(base, X, y, policy)
    assert len(p.turns) == 3 and sorted(sum((t["holdout"] for t in p.turns), [])) == list(range(len(y)))
    assert p.best_epoch == sorted(t["best_epoch"] for t in p.turns)[1]
    for t in p.turns:  # each turn: its own task A, checked at its own best epoch
        errors = np.array(t["holdout_errors"])
        assert errors.shape == (len(t["holdout_losses"]), len(t["holdout"]))
        assert t["best_epoch"] == int(np.argmin(t["holdout_losses"]))
        assert t["acceptance"]["net"] == int(np.sign(errors[0] - errors[t["best_epoch"]]).sum())
    assert p.acceptance["net"] == sum(t["acceptance"]["net"] for t in p.turns)
    assert p.acceptance["needed"] == max(1, int(np.ceil(0.1 * len(y) - 1e-9)))
    assert p.acceptance["accepted"] == (p.epochs > 0)
    assert (p.holdout, p.holdout_losses) == (p.turns[0]["holdout"], p.turns[0]["holdout_losses"])
    trace = golden.policy_trace(base, X, y, policy)
    assert trace["turns"] == p.turns and trace["epochs"] == p.epochs and trace["policy"]["holdout_folds"] == 3
    one = personalize(base, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=30, patience=4))
    assert len(one.turns) == 1 and one.acceptance == one.turns[0]["acceptance"]  # k = 1: the check as before


def test_a_policy_with_a_key_this_runtime_does_not_know_is_refused_by_name():
    shipped = UpdatePolicy(accept_margin=0.05, holdout_folds=3).as_dict()
    assert UpdatePolicy.from_dict(shipped) == UpdatePolicy(accept_margin=0.05, holdout_folds=3)
    older = {k: v for k, v in shipped.items() if k not in ("accept_margin", "holdout_folds")}
    # a release from before the acceptance check and the turns: no check, one turn (as TandemKit decodes it)
    assert (UpdatePolicy.from_dict(older).accept_margin, UpdatePolicy.from_dict(older).holdout_folds) == (None, 1)
    with pytest.raises(ValueError, match=r"^the update policy has holdout_strategy, z_rule, which this runtime"):
        UpdatePolicy.from_dict({**shipped, "z_rule": 2, "holdout_strategy": "leave_one_session_out"})
