"""Metrics and the confusion-matrix plot on hand-checkable examples."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.training import metrics as evaluation

LABELS = ["a", "b", "c"]


def test_confusion_matrix():
    cm = evaluation.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.dtype == np.int64
    with pytest.raises(ValueError):
        evaluation.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        evaluation.confusion_matrix([0, 1], [0], 3)


def test_metrics_hand_checked():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 2, 0]
    m = evaluation.metrics(y_true, y_pred, LABELS)
    # a: tp 1, fp 1, fn 1 -> f1 = 2/4; b: tp 1, fp 1, fn 0 -> 2/3; c: tp 2, fp 0, fn 1 -> 4/5
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_f1"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 0.8})
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m["per_class_precision"]["a"] == pytest.approx(0.5) and m["per_class_recall"]["c"] == pytest.approx(2 / 3)
    assert m["support"] == {"a": 2, "b": 1, "c": 3}
    assert m["n"] == 6
    # label names work too
    assert evaluation.metrics(["a", "c"], ["a", "b"], LABELS)["accuracy"] == 0.5


def test_metrics_absent_class_and_perfect():
    m = evaluation.metrics([0, 1, 1], [0, 1, 1], LABELS)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["per_class_f1"]["c"] is None  # neither present nor predicted: not in the macro average
    m = evaluation.metrics([0, 0], [2, 2], LABELS)
    assert m["per_class_f1"] == {"a": 0.0, "b": None, "c": 0.0} and m["macro_f1"] == 0.0


def test_plot_confusion_matrix(tmp_path):
    cm = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 9]])  # an empty row must not divide by zero
    path = evaluation.plot_confusion_matrix(cm, LABELS, tmp_path / "out" / "cm.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with pytest.raises(ValueError):
        evaluation.plot_confusion_matrix(cm, LABELS[:2], tmp_path / "x.png")


def test_the_protocol_grades_the_task_by_its_own_targets():
    """HAR's targets come from its task.yaml `evaluation.targets` (a task stating none gets none:
    tests/test_new_tasks.py); each is graded against the measured numbers."""
    from tandem.evaluation.robust_eval import task_targets
    from tandem.task import resolve

    har = resolve("har")
    assert har.evaluation.targets.generic_accuracy == 0.95
    good = task_targets(har, {"mean": 0.95, "sd_over_seeds": 0.01}, {"gain_points": 4.0, "harmed_share": 0.05})
    assert good == {"generic_mean_at_least_0.95": True, "generic_sd_over_seeds_at_most_1_points": True,
                    "u20_gain_at_least_3_points": True, "u20_harmed_at_most_10_percent": True}
    bad = task_targets(har, {"mean": 0.94, "sd_over_seeds": 0.02}, {"gain_points": 2.0, "harmed_share": 0.2})
    assert not any(bad.values())
    # the grading is the task's it is given, in the same process: another task's targets are not HAR's
    assert not any(k.startswith("generic_mean_at_least") for k in task_targets(
        resolve("grunfeld"), {"mean": 0.95, "sd_over_seeds": 0.01}, {"gain_points": 4.0, "harmed_share": 0.05}))
