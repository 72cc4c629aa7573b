"""The personalization policy the app runs around MLUpdateTask, simulated with the device runtime.

With a user's labelled windows (X, y), in capture order:

1. hold out the latest 1/`holdout_every` (at least one) of each class's labelled windows (when every labelled class
   has at least `min_per_class` windows; otherwise skip to 3 with `fallback_epochs`);
2. task A: update the base on the rest, at most `max_epochs`; the progress handler computes the
   held-out cross-entropy at each epoch's end (and once on the base before starting, "epoch 0") and
   cancels the task `patience` epochs after the best; the best epoch E is remembered;
3. task B: update the base on all labelled windows for E epochs (E = 0: keep the base: no epoch
   beat it on the user's own held-out windows, so updating would likely harm).

Both tasks use shuffle = false, so a phone reproduces every step exactly (Core ML's shuffling RNG
is not ours); instead the app feeds the windows interleaved over classes (`interleave`), so no
mini-batch holds one class only (batches of one class each drag the head to that class in turn:
more labels then hurt). Rows with NaN/inf features or targets, or features the base overflows on,
are skipped with a count before either task; a task whose weights go non-finite is stopped there
(task A keeps its earlier epochs; task B rolls back to the base); no usable rows keep the base.
numpy + protobuf only, like the rest of `tandem.device`. TandemKit's UpdatePolicyRunner (Swift) is
its twin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update import UpdateDiverged, update


@dataclass(frozen=True)
class UpdatePolicy:
    learning_rate: float = 0.01
    mini_batch_size: int = 8
    max_epochs: int = 80
    patience: int = 10
    holdout_every: int = 3
    min_per_class: int = 3
    fallback_epochs: int = 30

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UpdatePolicy":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class PolicyResult:
    model: DeviceModel
    epochs: int  # of task B (0: the base is kept)
    holdout: list[int] = field(default_factory=list)  # rows of (X, y) held out in task A
    holdout_losses: list[float] = field(default_factory=list)  # index e: after e epochs of task A (0: base)
    loss_before: float = float("nan")  # task B's loss on all labelled windows, before / after
    loss_after: float = float("nan")
    skipped: list[int] = field(default_factory=list)  # rows refused before any update (NaN/inf, overflow)
    note: str = ""  # why the base was kept, when it was


def _is_numeric(y) -> bool:
    return np.asarray(y).dtype.kind == "f"


def holdout_rows(y, policy: UpdatePolicy) -> np.ndarray:
    """The last ceil(count / holdout_every) windows of each class in the given (capture) order (a
    regressor's targets: of all rows). The latest, not every k-th: windows overlap by half, so a
    neighbour of a training window would make a held-out loss that never sees overfitting."""
    y = np.zeros(len(y), dtype=str) if _is_numeric(y) else np.asarray(y).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if policy.holdout_every < 2 or counts.min() < policy.min_per_class:
        return np.empty(0, np.int64)
    rows = [np.flatnonzero(y == c)[-math.ceil(n / policy.holdout_every):] for c, n in zip(classes, counts)]
    return np.sort(np.concatenate(rows)).astype(np.int64)


def interleave(y) -> np.ndarray:
    """Row order: round-robin over the classes (sorted by name), each in its given (capture) order;
    a regressor's rows keep their order."""
    if _is_numeric(y):
        return np.arange(len(y), dtype=np.int64)
    y = np.asarray(y).astype(str)
    queues = [list(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = []
    while any(queues):
        order += [q.pop(0) for q in queues if q]
    return np.asarray(order, dtype=np.int64)


def cross_entropy(proba: np.ndarray, y, class_labels) -> float:
    index = {str(c): i for i, c in enumerate(class_labels)}
    t = np.array([index[str(v)] for v in y])
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(t)), t], 1e-300, None))))


def held_out_loss(model: DeviceModel, X, y) -> float:
    """The loss the app watches at each epoch's end: cross-entropy, or MSE for a regressor."""
    if _is_numeric(y):
        return float(np.mean((model.predict(X) - np.asarray(y, dtype=np.float64)) ** 2))
    return cross_entropy(model.predict_proba(X), y, model.class_labels)


def epoch_loss(predict, Xv, yv, class_labels) -> float:
    """The held-out loss from the update's predict hook (probabilities, or a regressor's outputs)."""
    out = np.asarray(predict(Xv))
    if _is_numeric(yv):
        out = out[:, 0] if out.ndim == 2 else out
        return float(np.mean((out - yv) ** 2))
    return cross_entropy(out, yv, class_labels)


def best_epoch(losses) -> int:
    """The first minimum (np.argmin's choice); a non-finite loss never counts as the best."""
    finite = np.where(np.isfinite(losses), losses, np.inf)
    return int(np.argmin(finite)) if np.isfinite(finite).any() else 0


def unusable_rows(base: DeviceModel, X, y) -> np.ndarray:
    """Rows no update may see: NaN/inf features or targets, or features the base overflows on."""
    if not len(X):
        return np.zeros(0, bool)
    non_finite, overflow = base.usable_rows(X)
    bad = non_finite | overflow
    if _is_numeric(y):
        bad |= ~np.isfinite(np.asarray(y, dtype=np.float64))
    return bad


def personalize(base, X, y, policy: UpdatePolicy | None = None) -> PolicyResult:
    policy = policy or UpdatePolicy()
    base = DeviceModel.load(base)
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1) if len(X) else np.zeros((0, base.input_dim or 0))
    y = np.asarray(y, dtype=np.float64) if _is_numeric(y) else np.asarray(y).astype(str)
    bad = unusable_rows(base, X, y)
    skipped = np.flatnonzero(bad).tolist()
    if bad.all():  # empty, or nothing usable: a no-op that says so
        note = "no labelled rows" if not len(X) else f"all {len(X)} labelled rows are unusable (NaN, inf or overflow)"
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, skipped=skipped, note=note + ": the base is kept")
    X, y = X[~bad], y[~bad]
    order = interleave(y)
    X, y = X[order], y[order]  # rows are renumbered: holdout indices refer to this order
    common = dict(learning_rate=policy.learning_rate, mini_batch_size=policy.mini_batch_size, shuffle=False)
    hold = holdout_rows(y, policy)
    losses: list[float] = []
    note = ""
    if len(hold):
        keep = np.setdiff1d(np.arange(len(y)), hold)
        Xv, yv = X[hold], y[hold]
        losses.append(held_out_loss(base, Xv, yv))

        def progress(epoch: int, predict) -> bool:  # the app's progress handler at .epochEnd
            with np.errstate(over="ignore", invalid="ignore"):
                losses.append(epoch_loss(predict, Xv, yv, base.class_labels))
            return not np.isfinite(losses[-1]) or epoch - best_epoch(losses) >= policy.patience

        keep = keep[interleave(y[keep])]
        try:
            update(base, X[keep], y[keep], on_epoch=progress, epochs=policy.max_epochs, **common)
        except UpdateDiverged as e:
            note = f"{e} (task A stopped there)"
        epochs = best_epoch(losses)  # first minimum
    else:
        epochs = policy.fallback_epochs
    if epochs == 0:
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, hold.tolist(), losses, skipped=skipped,
                            note=note or "no epoch beat the base on the held-out rows: the base is kept")
    try:
        result = update(base, X, y, epochs=epochs, **common)
    except UpdateDiverged as e:  # roll back: the phone keeps the base
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, hold.tolist(), losses, skipped=skipped,
                            note=f"{e}: rolled back to the base")
    return PolicyResult(result.model, epochs, hold.tolist(), losses, result.loss_before, result.loss_after,
                        skipped=skipped, note=note)
