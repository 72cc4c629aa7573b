"""Personalization as the app does it, simulated with the device runtime, with one protocol for the
release gate and the evaluation: per recording session and class, a user's earlier windows are
the device's local pool and the later ones are held out; the user labels a few pool windows spread
over time (windows overlap by half, so contiguous labels are near-duplicates); the model updates on
them and is scored on the held-out windows. A regressor's examples split by session and time only,
and its score is minus the mean absolute error (higher is better, like accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update import update
from tandem.device.update_policy import UpdatePolicy, acceptance
from tandem.device.update_policy import personalize as policy_update


def numeric(labels) -> bool:
    """A regressor's targets (floats) rather than class names."""
    return np.asarray(labels).dtype.kind == "f"


def errors_of(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each window's error: 0 right / 1 wrong, or a regressor's absolute error."""
    if numeric(labels):
        return np.abs(predicted - labels)
    return (predicted != labels).astype(np.float64)


def window_changes(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(better, worse): held-out windows the `after` predictions got right that `before` got wrong, and
    the other way round (a regressor: its absolute error fell / rose), counted by the device policy's
    own acceptance rule. The update gate's evidence of harm."""
    counted = acceptance(errors_of(before, labels), errors_of(after, labels), margin=None)
    return counted["better"], counted["worse"]


def score_of(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy, or minus the mean absolute error for a regressor: higher is better either way."""
    errors = errors_of(predicted, labels)
    return -float(np.mean(errors)) if numeric(labels) else float(np.mean(errors == 0))


@dataclass
class Personalized:
    model: DeviceModel
    accuracy_before: float  # the score (see `score_of`)
    accuracy_after: float
    loss_before: float
    loss_after: float
    loss_history: list[float]
    n_train: int
    n_test: int
    windows_better: int = 0  # held-out windows the update got right that the base got wrong (a regressor: |error| fell)
    windows_worse: int = 0  # ... and the other way round
    method: str = "fine_tune"  # what the update policy gave the user: "base", "fine_tune" or "knn" (no policy: fine_tune)

    @property
    def gain(self) -> float:
        return self.accuracy_after - self.accuracy_before


def sessions(window_keys) -> np.ndarray:
    """The recording session of each window ("<session>:<start>" keys; one session otherwise)."""
    return np.array([k.split(":", 1)[0] if ":" in k else "0" for k in window_keys])


def local_split(user, test_fraction: float = 0.5, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices of a user (anything with window_keys, labels, captured_at). Per recording
    session and class, in capture order, the earlier windows are the device's local pool (what it
    may label, share and train on) and the later `test_fraction` are held out for scoring; `gap`
    windows in between are dropped because windows overlap by 50%."""
    session, pool, test = sessions(user.window_keys), [], []
    labels, captured_at = np.asarray(user.labels), np.asarray(user.captured_at)
    if numeric(labels):
        labels = np.zeros(len(labels))
    for s in np.unique(session):
        for c in np.unique(labels):
            idx = np.flatnonzero((session == s) & (labels == c))
            if len(idx) == 0:
                continue
            idx = idx[np.argsort(captured_at[idx], kind="stable")]
            cut = int(round(len(idx) * (1.0 - test_fraction)))
            pool.extend(idx[:cut])
            test.extend(idx[cut + gap:])
    return np.array(sorted(pool), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def pick_labelled(labels: np.ndarray, candidates: np.ndarray, per_class: int | None = None,
                  per_user: int | None = None, spread: bool = True) -> np.ndarray:
    """The windows the user labels among `candidates`: `per_class` of each class, or a budget of
    `per_user` windows split evenly over the classes present. `spread`: evenly spaced over the
    candidates in capture order (the user labels now and then); else the first ones (contiguous)."""
    if (per_class is None) == (per_user is None):
        raise ValueError("give exactly one of per_class and per_user")
    labels = np.zeros(len(labels)) if numeric(labels) else np.asarray(labels)
    classes = np.unique(labels[candidates])
    out = []
    for i, c in enumerate(classes):
        idx = candidates[labels[candidates] == c]
        k = per_class if per_class is not None else per_user // len(classes) + (1 if i < per_user % len(classes) else 0)
        k = min(k, len(idx))
        if k <= 0:
            continue
        out.extend(idx[np.linspace(0, len(idx) - 1, k).round().astype(int)] if spread else idx[:k])
    return np.array(sorted(set(int(i) for i in out)), dtype=np.int64)


def personalize(base: DeviceModel, user, labelled_per_user: int, policy: UpdatePolicy | None = None,
                **overrides) -> Personalized:
    """Update a copy of `base` on `labelled_per_user` labelled pool windows of `user` (anything with
    features, labels, window_keys, captured_at); score before and after on the held-out windows.
    With `policy`: the app's update policy (held-out early stopping, then a refit) instead of one task."""
    pool, test = local_split(user)
    train = pick_labelled(user.labels, pool, per_user=labelled_per_user)
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"user {user.user_id}: nothing to label or to score")
    return update_and_score(base, user, train, test, policy=policy, **overrides)


def update_and_score(base: DeviceModel, user, train: np.ndarray, test: np.ndarray, policy: UpdatePolicy | None = None,
                     **overrides) -> Personalized:
    """The device runtime's update of a copy of `base` on the `train` windows, scored before and
    after on the `test` windows."""
    X, labels = user.features, np.asarray(user.labels)
    was, truth = base.predict(X[test]), labels[test]

    def scored(model: DeviceModel) -> tuple:  # before, after, windows better, windows worse
        now = model.predict(X[test])
        return score_of(was, truth), score_of(now, truth), *window_changes(was, now, truth)

    if policy is not None:
        p = policy_update(base, X[train], labels[train], policy)
        before, after, better, worse = scored(p.model)
        loss_before = p.loss_before if p.epochs else float("nan")
        return Personalized(p.model, before, after, loss_before, p.loss_after, p.holdout_losses, len(train), len(test),
                            better, worse, p.method)
    result = update(DeviceModel.load(base.to_bytes()), X[train], labels[train], **overrides)
    before, after, better, worse = scored(result.model)
    return Personalized(result.model, before, after, result.loss_before, result.loss_after, result.history,
                        len(train), len(test), better, worse)
