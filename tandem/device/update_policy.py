"""The personalization policy the app runs around MLUpdateTask, simulated with the device runtime.

With a user's labelled windows (X, y), in capture order:

1. hold out the latest 1/`holdout_every` (at least one) of each class's labelled windows (when every labelled class
   has at least `min_per_class` windows; otherwise skip to 4 with `fallback_epochs`). With `holdout_folds` k > 1,
   every labelled window is held out once instead: each class's windows in capture order are cut into k contiguous
   blocks, and steps 2-3 run once per block (a "turn"; every class needs max(k, `min_per_class`) windows);
2. task A: update the base on the rest, at most `max_epochs`; the progress handler computes the
   held-out cross-entropy at each epoch's end (and once on the base before starting, "epoch 0") and
   cancels the task `patience` epochs after the best; the best epoch E is remembered;
3. the acceptance check: on the held-out windows, count the rows epoch E got better than the base
   minus the rows it got worse (a classifier: wrong -> right minus right -> wrong; a regressor: the
   absolute error fell minus rose). Unless that net count reaches max(1, ceil(`accept_margin` x
   held-out rows)), keep the base: an update that barely beats the base on a handful of the user's
   own windows harms as often as it helps (docs/research/issue19: 20-25 % of users harmed without
   the check, 0-2 % with it at 0.1). E = 0 (no epoch beat the base's held-out loss) keeps it too. With k turns,
   each turn's net count is taken at its own best epoch, the counts are summed over the turns, the rows needed
   are counted over all held-out rows (every labelled window), and E is the lower median of the turns' best
   epochs: the latest third judges an update by ~7 windows at 20 labels, k turns by all 20;
4. task B: update the base on all labelled windows for E epochs.

With `knn_neighbors` (a classifier), a second candidate is judged on the same held-out rows: the release's
k-NN personal model (`tandem.device.knn`: the network's embedding, then an updatable k-NN) given each turn's
other rows, its held-out rows right or wrong against the base's. It passes the same check (at least one
net row when `accept_margin` is null); the user gets whichever passing candidate has the larger net count
(a tie: the fine-tune), the k-NN one holding all labelled windows. Neither passing keeps the base.

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

from tandem.device.knn import knn_pipeline, knn_update
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
    accept_margin: float | None = 0.1  # share of the held-out rows; None: no acceptance check (task B whenever E > 0)
    holdout_folds: int = 1  # k > 1: every labelled window held out once, in k turns of task A
    knn_neighbors: int | None = None  # k: the k-NN personal model is a second candidate; None: fine-tune only

    def as_dict(self) -> dict:
        """The release's `update_policy`; without a k-NN candidate its key is left out, so a TandemKit from
        before it reads the release as it always did."""
        d = asdict(self)
        return d if self.knn_neighbors is not None else {k: v for k, v in d.items() if k != "knn_neighbors"}

    @classmethod
    def from_dict(cls, d: dict) -> "UpdatePolicy":
        """A release's `update_policy`; a key this runtime does not know is refused, as TandemKit does
        (running the rest of a newer rule would not be the rule the release's golden trace proved)."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"the update policy has {', '.join(unknown)}, which this runtime does not know: "
                             "the release needs a newer Tandem")
        return cls(**{"accept_margin": None, **d})  # a release from before the check has none (as TandemKit reads it)


@dataclass
class PolicyResult:
    model: DeviceModel
    epochs: int  # of task B (0: the base is kept)
    holdout: list[int] = field(default_factory=list)  # rows of (X, y) held out in task A
    holdout_losses: list[float] = field(default_factory=list)  # index e: after e epochs of task A (0: base)
    loss_before: float = float("nan")  # task B's loss on all labelled windows, before / after
    loss_after: float = float("nan")
    skipped: list[int] = field(default_factory=list)  # rows refused before any update (NaN/inf, overflow)
    order: list[int] = field(default_factory=list)  # the usable rows in the order fed (holdout indexes this order)
    note: str = ""  # why the base was kept, when it was
    holdout_errors: list[list[float]] = field(default_factory=list)  # index e: each held-out row's error after e epochs
    acceptance: dict = field(default_factory=dict)  # the check on epoch E: net rows better, rows needed, accepted
    best_epoch: int = 0  # E, task A's first minimum of the held-out loss (k turns: the lower median of theirs)
    # each run of task A: holdout, holdout_losses, holdout_errors, best_epoch and acceptance (at its own best
    # epoch); the fields above hold the first turn's, E and the verdict over all turns
    turns: list[dict] = field(default_factory=list)
    method: str = "base"  # what the user got: "base", "fine_tune" or "knn"
    knn: dict = field(default_factory=dict)  # the k-NN candidate's check over all turns ({} without one)


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


def holdout_turns(y, policy: UpdatePolicy) -> list[np.ndarray]:
    """The held-out rows of each run of task A. `holdout_folds` 1: one turn, `holdout_rows`. k > 1: per
    class (a regressor: all rows) in the given (capture) order, k contiguous blocks (numpy's array_split:
    the first blocks one row longer); turn t holds out block t of every class. No turn when a class has
    fewer than max(k, min_per_class) rows or holdout_every < 2."""
    k = policy.holdout_folds
    if k <= 1:
        hold = holdout_rows(y, policy)
        return [hold] if len(hold) else []
    y = np.zeros(len(y), dtype=str) if _is_numeric(y) else np.asarray(y).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if policy.holdout_every < 2 or counts.min() < max(k, policy.min_per_class):
        return []
    blocks = [np.array_split(np.flatnonzero(y == c), k) for c in classes]
    return [np.sort(np.concatenate([b[t] for b in blocks])).astype(np.int64) for t in range(k)]


def lower_median(values) -> int:
    """The lower of the two middle values (the middle one for an odd count): an epoch count that ran."""
    return int(sorted(values)[(len(values) - 1) // 2])


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


def row_errors(out: np.ndarray, y, class_labels) -> np.ndarray:
    """Each row's error: 0 right / 1 wrong (a classifier's argmax, first maximum on a tie), or a
    regressor's absolute error."""
    out = np.asarray(out, dtype=np.float64)
    if _is_numeric(y):
        out = out[:, 0] if out.ndim == 2 else out
        return np.abs(out - np.asarray(y, dtype=np.float64))
    predicted = np.asarray([str(c) for c in class_labels])[np.argmax(out, axis=1)]
    return (predicted != np.asarray(y).astype(str)).astype(np.float64)


def epoch_check(out, yv, class_labels) -> tuple[float, np.ndarray]:
    """The held-out loss and each held-out row's error, from the model's outputs (probabilities, or
    a regressor's values)."""
    out = np.asarray(out)
    if _is_numeric(yv):
        values = out[:, 0] if out.ndim == 2 else out
        return float(np.mean((values - yv) ** 2)), row_errors(values, yv, class_labels)
    return cross_entropy(out, yv, class_labels), row_errors(out, yv, class_labels)


def base_output(model: DeviceModel, X, y) -> np.ndarray:
    return model.predict(X) if _is_numeric(y) else model.predict_proba(X)


def acceptance(errors_base, errors_best, margin: float | None) -> dict:
    """Whether epoch E's update is worth shipping: the held-out rows it got better on, minus those it
    got worse on, must reach max(1, ceil(margin x held-out rows)). A float tolerance of 1e-12 keeps a
    regressor's unchanged rows from counting either way."""
    base, best = np.asarray(errors_base, np.float64), np.asarray(errors_best, np.float64)
    return _checked(int(np.sum(best < base - 1e-12)), int(np.sum(best > base + 1e-12)), len(base), margin)


def _checked(better: int, worse: int, rows: int, margin: float | None) -> dict:
    needed = 1 if margin is None else max(1, math.ceil(margin * rows - 1e-9))
    return {"better": better, "worse": worse, "net": better - worse, "needed": needed,
            "accepted": margin is None or better - worse >= needed}


def verdict(turns: list[dict], margin: float | None) -> dict:
    """The acceptance check over all turns: rows better minus rows worse, each turn at its own best
    epoch, summed; the rows needed are max(1, ceil(margin x all held-out rows)). One turn: `acceptance`."""
    return _checked(sum(t["acceptance"]["better"] for t in turns), sum(t["acceptance"]["worse"] for t in turns),
                    sum(len(t["holdout"]) for t in turns), margin)


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


def task_a(base: DeviceModel, X, y, hold: np.ndarray, policy: UpdatePolicy, common: dict) -> tuple[dict, str]:
    """One run of task A with `hold` held out: the held-out loss and each held-out row's error after
    each epoch (0: the base), cancelled `patience` epochs after the best; its best epoch and the
    acceptance check there. Also why it stopped early when it diverged."""
    keep = np.setdiff1d(np.arange(len(y)), hold)
    Xv, yv = X[hold], y[hold]
    losses: list[float] = []
    errors: list[list[float]] = []

    def record(out) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            loss, errs = epoch_check(out, yv, base.class_labels)
        losses.append(loss)
        errors.append(errs.tolist())

    record(base_output(base, Xv, yv))

    def progress(epoch: int, predict) -> bool:  # the app's progress handler at .epochEnd
        record(predict(Xv))
        return not np.isfinite(losses[-1]) or epoch - best_epoch(losses) >= policy.patience

    keep = keep[interleave(y[keep])]
    note = ""
    try:
        update(base, X[keep], y[keep], on_epoch=progress, epochs=policy.max_epochs, **common)
    except UpdateDiverged as e:
        note = f"{e} (task A stopped there)"
    best = best_epoch(losses)  # first minimum
    return {"holdout": hold.tolist(), "holdout_losses": losses, "holdout_errors": errors, "best_epoch": best,
            "acceptance": acceptance(errors[0], errors[best], policy.accept_margin)}, note


def knn_turn(knn_base: DeviceModel, X, y, turn: dict, margin: float | None) -> dict:
    """The k-NN candidate on one turn: the personal model given the turn's other rows (in task A's feed
    order), each held-out row's error, and the check against the base's errors."""
    hold = np.asarray(turn["holdout"], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(y)), hold)
    keep = keep[interleave(y[keep])]
    predicted = knn_update(knn_base, X[keep], y[keep]).predict(X[hold])
    errors = (np.asarray(predicted).astype(str) != y[hold].astype(str)).astype(np.float64)
    return {"errors": errors.tolist(), "acceptance": acceptance(turn["holdout_errors"][0], errors, margin)}


def knn_verdict(turns: list[dict], margin: float | None) -> dict:
    """The k-NN candidate's check over all turns: as `verdict`, but with no margin it still needs one net row
    (it has no held-out loss to have stopped on)."""
    check = _checked(sum(t["knn"]["acceptance"]["better"] for t in turns),
                     sum(t["knn"]["acceptance"]["worse"] for t in turns), sum(len(t["holdout"]) for t in turns), margin)
    return {**check, "accepted": check["net"] >= check["needed"]}


def _knn_base(base: DeviceModel, policy: UpdatePolicy, given) -> DeviceModel | None:
    if policy.knn_neighbors is None:
        return None
    if not base.is_classifier:
        raise ValueError("the k-NN candidate needs a classifier (Core ML's k-NN predicts classes): "
                         "set knn_neighbors to null for a regressor")
    return DeviceModel.load(given) if given is not None else knn_pipeline(base, policy.knn_neighbors)


def _judged(turns: list[dict], epochs: int) -> str:
    return f"epoch {epochs}" if len(turns) == 1 else f"{len(turns)} turns at their best epochs"


def personalize(base, X, y, policy: UpdatePolicy | None = None, knn_model=None) -> PolicyResult:
    """The policy on a user's labelled rows. `knn_model`: the release's k-NN personal model (built from the
    base when not given) when the policy has `knn_neighbors`."""
    policy = policy or UpdatePolicy()
    base = DeviceModel.load(base)
    knn_base = _knn_base(base, policy, knn_model)
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
    note = ""
    turns = []
    for hold in holdout_turns(y, policy):
        turn, why = task_a(base, X, y, hold, policy, common)
        if knn_base is not None:
            turn["knn"] = knn_turn(knn_base, X, y, turn, policy.accept_margin)
        turns.append(turn)
        note = note or why
    if turns:
        epochs = lower_median([t["best_epoch"] for t in turns])
        check = verdict(turns, policy.accept_margin) if epochs > 0 else {}
    else:
        epochs, check = policy.fallback_epochs, {}
    first = turns[0] if turns else {"holdout": [], "holdout_losses": [], "holdout_errors": []}
    hold, losses = first["holdout"], first["holdout_losses"]
    knn = knn_verdict(turns, policy.accept_margin) if knn_base is not None and turns else {}
    kept = dict(best_epoch=epochs if turns else 0, skipped=skipped, order=order.tolist(), holdout_errors=first["holdout_errors"],
                acceptance=check, turns=turns, knn=knn)
    fine_tune_passes = epochs > 0 and check.get("accepted", True)
    if knn.get("accepted") and not (fine_tune_passes and check.get("net", 0) >= knn["net"]):
        return PolicyResult(knn_update(knn_base, X, y), 0, hold, losses, **kept, method="knn",
                            note=f"the k-NN personal model did better than the base on {knn['net']} more held-out "
                                 f"rows than worse ({knn['needed']} needed)" +
                                 (f", the fine-tune on {check['net']}" if fine_tune_passes else ""))
    if epochs == 0:
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, hold, losses, **kept,
                            note=note or "no epoch beat the base on the held-out rows: the base is kept")
    if check and not check["accepted"]:
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, hold, losses, **kept,
                            note=f"{_judged(turns, epochs)} did better than the base on {check['net']} more held-out "
                                 f"rows than worse, {check['needed']} needed: the base is kept")
    try:
        result = update(base, X, y, epochs=epochs, **common)
    except UpdateDiverged as e:  # roll back: the phone keeps the base
        return PolicyResult(DeviceModel.load(base.to_bytes()), 0, hold, losses, **kept,
                            note=f"{e}: rolled back to the base")
    return PolicyResult(result.model, epochs, hold, losses, result.loss_before, result.loss_after,
                        **kept, note=note, method="fine_tune")
