"""The task's network: an MLP over the feature vector, trained with PyTorch on the server.

The network is deliberately made of pieces Core ML's NeuralNetwork can express and update on the
device: standardization (a batchnorm layer), dense layers with ReLU ("body.0", "body.1", ...), a
dense head ("head") and, for a classifier, a softmax. A regressor's head has one output; it trains
on the standardized target and `export_weights` folds the target's scale into the head, so the
device sees (and updates with MSE) plain target units. `export_weights` hands those pieces to
`tandem.training.export`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, Field, field_validator, model_validator
from torch import nn

from tandem.task import Task

STD_FLOOR = 1e-6


# Tandem's generic pretraining defaults, for a task whose task.yaml has no `training` section (or
# leaves a value out): the reference point the HAR study started from (tandem/evaluation/tuning.py's
# first trial), plain Adam without regularization tricks. Documented in docs/bring-your-own-task.md.
GENERIC_TRAINING = {"epochs": 100, "learning_rate": 1e-3, "batch_size": 64, "weight_decay": 1e-3,
                    "patience": 15, "dropout": 0.0, "label_smoothing": 0.0}
GENERIC_HIDDEN_SIZES = (128, 64)  # a task.yaml's `model.hidden_sizes` when it says none


class TrainConfig(BaseModel):
    """Pretraining hyperparameters of a task's network. The defaults here are generic (never a task's):
    `TrainConfig.for_task(task, **given)` fills what is not given from the task's task.yaml (`training`,
    `model.hidden_sizes`, `model.updatable`), and `config.on(task)` does so for a config's unset fields."""

    epochs: int = Field(GENERIC_TRAINING["epochs"], ge=1, le=1000, description="maximum number of training epochs")
    learning_rate: float = Field(GENERIC_TRAINING["learning_rate"], gt=0, le=1, description="Adam learning rate")
    batch_size: int = Field(GENERIC_TRAINING["batch_size"], ge=1, le=65536, description="mini-batch size")
    hidden_sizes: list[int] = Field(
        default_factory=lambda: list(GENERIC_HIDDEN_SIZES), min_length=1, max_length=6,
        description="width of each hidden dense layer (body.0, body.1, ...); 1..6 layers of 1..4096 units")
    weight_decay: float = Field(GENERIC_TRAINING["weight_decay"], ge=0, le=1, description="Adam weight decay (L2 penalty)")
    patience: int = Field(GENERIC_TRAINING["patience"], ge=1, le=1000,
                          description="stop after this many epochs without a lower validation loss")
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of training data (of users, when grouped) held out for validation")
    seed: int = Field(0, ge=0, description="seed of initialization, split and shuffling")
    dropout: float = Field(GENERIC_TRAINING["dropout"], ge=0, lt=1,
                           description="dropout after each hidden layer while training (none at inference)")
    label_smoothing: float = Field(GENERIC_TRAINING["label_smoothing"], ge=0, lt=1,
                                   description="cross-entropy label smoothing while training")
    updatable_layers: list[str] = Field(
        default_factory=lambda: ["head"], min_length=1,
        description='dense layers the app may update on the device: "head" and/or "body.<i>", or "calibration" (added by '
                    'the export after the head); the task\'s '
                    '`model.updatable` decides (head: the head only)')

    @field_validator("hidden_sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= s <= 4096 for s in sizes):
            raise ValueError("each hidden size must be within 1..4096")
        return sizes

    @model_validator(mode="after")
    def _layers(self) -> "TrainConfig":
        if len(set(self.updatable_layers)) != len(self.updatable_layers):
            raise ValueError("updatable_layers has duplicates")
        valid = [*dense_layer_names(len(self.hidden_sizes)), CALIBRATION]
        for name in self.updatable_layers:
            if name not in valid:
                raise ValueError(f"unknown updatable layer {name!r}: choose from {valid}")
        return self

    @classmethod
    def for_task(cls, task: Task, **given) -> "TrainConfig":
        """The task's own values (its task.yaml `training` and `model`), generic ones where it states
        none, `given` over both. The updatable layers are exactly what `model.updatable` says; asking
        for others raises (a release must ship what task.yaml promises)."""
        stated = {name: value for name, value in task.training.model_dump().items() if value is not None}
        values = {**GENERIC_TRAINING, **stated, "hidden_sizes": list(task.model.hidden_sizes), **given}
        allowed = task.model.updatable_layers(len(values["hidden_sizes"]))
        values.setdefault("updatable_layers", allowed)
        config = cls.model_validate(values)
        if config.updatable_layers != allowed:
            which = "the head only" if allowed == ["head"] else f"the layers {allowed}"
            raise ValueError(f"task {task.name} lets the device update {which} (model.updatable: "
                             f"{task.model.updatable} in its task.yaml), not {config.updatable_layers}: "
                             "change model.updatable there to allow others")
        return config

    def on(self, task: Task) -> "TrainConfig":
        """This config with every field it was not given taken from the task (`for_task`)."""
        return TrainConfig.for_task(task, **self.model_dump(exclude_unset=True))


CALIBRATION = "calibration"  # the affine layer the export adds after the head (task.yaml `model.updatable: calibration`)


def dense_layer_names(n_hidden: int) -> list[str]:
    return [f"body.{i}" for i in range(n_hidden)] + ["head"]


class Classifier(nn.Module):
    """(x - mean) / std -> [Linear -> ReLU] * len(hidden_sizes) -> Linear -> logits (a classifier), or
    -> one output * target_std + target_mean (a regressor)."""

    def __init__(self, n_features: int, n_classes: int, hidden_sizes: list[int] | tuple[int, ...] = (64, 64),
                 mean: np.ndarray | None = None, std: np.ndarray | None = None, dropout: float = 0.0,
                 regression: bool = False, target_mean: float = 0.0, target_std: float = 1.0):
        super().__init__()
        self.regression = regression
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.dropout = nn.Dropout(dropout)  # identity in eval mode: nothing of it reaches Core ML
        mean = np.zeros(n_features) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(n_features) if std is None else np.maximum(np.asarray(std, dtype=np.float64), STD_FLOOR)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        sizes = [n_features, *hidden_sizes]
        self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], n_classes)

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.out_features for layer in self.body]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        for layer in self.body:
            z = self.dropout(torch.relu(layer(z)))
        out = self.head(z)
        return out * self.target_std + self.target_mean if self.regression else out


@dataclass
class TrainResult:
    model: Classifier
    history: list[dict] = field(default_factory=list)  # one dict per epoch run: epoch + metrics
    best_epoch: int = 0  # 1-based epoch whose weights the model holds
    stopped_early: bool = False
    best_val_loss: float = float("nan")
    n_train: int = 0
    n_val: int = 0


def split_indices(y: np.ndarray, fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices, deterministic in `seed`.

    With `groups` (user pseudonyms) whole groups go to validation, so it measures unseen users;
    otherwise the split is stratified by class. Both parts are non-empty when len(y) >= 2.
    """
    n = len(y)
    rng = np.random.default_rng(seed)
    if groups is not None:
        groups = np.asarray(groups)
        # Groups in order of first appearance, not sorted: pseudonyms are keyed hashes, and the split
        # must not depend on which key the devices happened to use.
        _, first = np.unique(groups, return_index=True)
        unique = groups[np.sort(first)]
        if len(unique) >= 2:
            order = rng.permutation(len(unique))
            n_val = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
            val_mask = np.isin(groups, unique[order[:n_val]])
            return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    val = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val.extend(idx[:k])
    val = np.sort(np.asarray(val, dtype=np.int64))
    if len(val) == 0 and n >= 2:
        val = np.asarray([rng.integers(n)])
    train_mask = np.ones(n, bool)
    train_mask[val] = False
    if not train_mask.any():
        raise ValueError("too little data to split off a validation set")
    return np.flatnonzero(train_mask), val


def _loss(model: Classifier, out: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on logits, or MSE on the standardized target (so its scale does not set the
    learning rate)."""
    if model.regression:
        return nn.functional.mse_loss((out[:, 0] - model.target_mean) / model.target_std,
                                      (y - model.target_mean) / model.target_std)
    return nn.functional.cross_entropy(out, y, label_smoothing=label_smoothing)


def _score(model: Classifier, out: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (classifier) or mean absolute error in target units (regressor)."""
    if model.regression:
        return float((out[:, 0] - y).abs().mean())
    return float((out.argmax(1) == y).float().mean())


def _evaluate(model: Classifier, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        out = model(X)
        return float(_loss(model, out, y).item()), _score(model, out, y)


def train(X: np.ndarray, y: np.ndarray, config: TrainConfig | None = None,
          on_epoch: Callable[[int, dict], None] | None = None, groups: np.ndarray | None = None,
          n_classes: int | None = None, regression: bool = False) -> TrainResult:
    """Train on features X (n, n_features) and class indices y (n,), or numeric targets y for a
    regressor (`regression`). A classifier's `n_classes` is the task's class count (a training set
    need not hold every class, so it is never read off y).

    Adam on cross-entropy (MSE on the standardized target for a regressor), early stopping on
    validation loss (the best epoch's weights are restored). `on_epoch(epoch, {"train_loss",
    "train_accuracy" | "train_mae", "val_loss", "val_accuracy" | "val_mae"})` is called after every
    epoch (1-based). Same data, config and seed give identical weights.
    """
    config = config or TrainConfig()
    if not regression and n_classes is None:
        raise ValueError("n_classes: give the task's class count (len(task.target.labels))")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64 if regression else np.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, features) and y (n,), got {X.shape} and {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds non-finite values")
    n_classes = 1 if regression else int(n_classes)
    if not regression and len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"class indices must be within 0..{n_classes - 1}")
    if regression and not np.isfinite(y).all():
        raise ValueError("y holds non-finite targets")
    if len(y) < 2:
        raise ValueError("need at least two examples to train")

    strata = np.zeros(len(y), dtype=np.int64) if regression else y
    train_idx, val_idx = split_indices(strata, config.validation_fraction, config.seed, groups)
    mean = X[train_idx].mean(axis=0)
    std = np.maximum(X[train_idx].std(axis=0), STD_FLOOR)

    torch.manual_seed(config.seed)
    target = (float(y[train_idx].mean()), float(max(y[train_idx].std(), STD_FLOOR))) if regression else (0.0, 1.0)
    model = Classifier(X.shape[1], n_classes, config.hidden_sizes, mean, std, config.dropout, regression, *target)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)

    Xt = torch.as_tensor(X[train_idx], dtype=torch.float32)
    yt = torch.as_tensor(y[train_idx], dtype=torch.float32 if regression else torch.int64)
    Xv = torch.as_tensor(X[val_idx], dtype=torch.float32)
    yv = torch.as_tensor(y[val_idx], dtype=torch.float32 if regression else torch.int64)

    result = TrainResult(model=model, n_train=len(train_idx), n_val=len(val_idx))
    best_state, best_loss, wait = copy.deepcopy(model.state_dict()), float("inf"), 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(yt), generator=generator)
        total_loss, scored = 0.0, 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            out = model(Xt[batch])
            loss = _loss(model, out, yt[batch], config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            scored += _score(model, out.detach(), yt[batch]) * len(batch)
        val_loss, val_score = _evaluate(model, Xv, yv)
        name = "mae" if regression else "accuracy"
        metrics = {"train_loss": total_loss / len(yt), f"train_{name}": scored / len(yt),
                   "val_loss": val_loss, f"val_{name}": val_score}
        result.history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, dict(metrics))
        if val_loss < best_loss:
            best_loss, wait, result.best_epoch = val_loss, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            wait += 1
            if wait >= config.patience:
                result.stopped_early = epoch < config.epochs
                break
    model.load_state_dict(best_state)
    model.eval()
    result.best_val_loss = best_loss
    return result


def predict_proba(model: Classifier, X: np.ndarray) -> np.ndarray:
    """Class probabilities (n, n_classes), float64."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(X, dtype=torch.float32)).double()
        return torch.softmax(logits, dim=1).numpy()


def predict_values(model: Classifier, X: np.ndarray) -> np.ndarray:
    """A regressor's predictions (n,) in target units, float64."""
    X = np.asarray(X, dtype=np.float64)
    X = X[None, :] if X.ndim == 1 else X
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=torch.float32)).double().numpy()[:, 0]


def outputs(model: Classifier, X: np.ndarray) -> np.ndarray:
    """What the network answers: class probabilities (n, n_classes), or a regressor's values (n,)."""
    return predict_values(model, X) if model.regression else predict_proba(model, X)


def export_weights(model: Classifier) -> dict:
    """The network as numpy arrays (float32), in the order Core ML evaluates it.

    {"mean", "std": (n_features,), "layers": [{"name", "W" (out, in), "b" (out,), "activation"}],
     "n_features", "n_classes"}; activation is "relu" for body layers and None for the head.
    """
    layers = [{"name": f"body.{i}", "W": layer.weight.detach().numpy().astype(np.float32).copy(),
               "b": layer.bias.detach().numpy().astype(np.float32).copy(), "activation": "relu"}
              for i, layer in enumerate(model.body)]
    W = model.head.weight.detach().double().numpy()
    b = model.head.bias.detach().double().numpy()
    if model.regression:  # fold the target's scale into the head: the device sees target units
        t_mean, t_std = float(model.target_mean), float(model.target_std)
        W, b = W * t_std, b * t_std + t_mean
    layers.append({"name": "head", "W": W.astype(np.float32), "b": b.astype(np.float32), "activation": None})
    scale = {"target_mean": float(model.target_mean), "target_std": float(model.target_std)} if model.regression else {}
    return {"regression": bool(model.regression), **scale, "mean": model.mean.numpy().astype(np.float32).copy(),
            "std": model.std.numpy().astype(np.float32).copy(),
            "layers": layers, "n_features": model.n_features, "n_classes": model.n_classes}
