"""Federated averaging (FedAvg, McMahan et al. 2017) with the same Classifier as pretraining.

Nothing but model parameters and aggregate statistics leave a device:

* standardization: each device reports (n, mean, variance) of its features; the server pools them
  (weighted mean, pooled variance = E[var] + Var[mean]) into the network's mean/std buffers;
* per communication round every participating device starts from the global weights, trains
  `local_epochs` epochs (Adam, fresh state) on its local data, and returns its weights; the server
  averages them weighted by sample count.

The result is a `model.TrainResult`, so `pretrain.convert` turns it into the same updatable .mlmodel
and it is personalized on the device like every other base.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tandem.training.model import STD_FLOOR, Classifier, TrainResult


@dataclass
class Client:
    X: np.ndarray  # (n, n_features)
    y: np.ndarray  # (n,) class indices


@dataclass
class FedAvgConfig:
    rounds: int = 10  # communication rounds
    local_epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    seed: int = 0


def federated_stats(clients: list[Client]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled feature mean and std from each client's (n, mean, var) only."""
    ns = np.array([len(c.X) for c in clients], dtype=np.float64)
    means = np.stack([c.X.mean(axis=0) for c in clients])
    variances = np.stack([c.X.var(axis=0) for c in clients])
    w = ns[:, None] / ns.sum()
    mean = (w * means).sum(axis=0)
    var = (w * (variances + (means - mean) ** 2)).sum(axis=0)
    return mean, np.maximum(np.sqrt(var), STD_FLOOR)


def _local_train(global_state: dict, template: Classifier, client: Client, cfg: FedAvgConfig,
                 generator: torch.Generator) -> dict:
    template.load_state_dict(global_state)
    opt = torch.optim.Adam(template.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return train_locally(template, opt, client, cfg.local_epochs, cfg.batch_size, generator)


def train_locally(net: Classifier, opt: torch.optim.Optimizer, client: Client, epochs: int, batch_size: int,
                  generator: torch.Generator, penalty=None) -> dict:
    """A client's local epochs of mini-batch cross-entropy (plus `penalty()`, e.g. FedProx's proximal
    term); returns a copy of the trained state."""
    net.train()
    X = torch.as_tensor(client.X, dtype=torch.float32)
    y = torch.as_tensor(client.y, dtype=torch.int64)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(net(X[b]), y[b])
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def federation(clients: list[Client], n_classes: int, hidden_sizes, seed: int):
    """What every federated run starts from: the clients with data, the global model (standardized
    with federated statistics, seeded), a working copy for local training, the generator and the
    clients' weights (their share of the rows)."""
    clients = [c for c in clients if len(c.y)]
    if not clients:
        raise ValueError("no client with data")
    mean, std = federated_stats(clients)
    torch.manual_seed(seed)
    model = Classifier(clients[0].X.shape[1], n_classes, hidden_sizes, mean, std)
    template = Classifier(clients[0].X.shape[1], n_classes, hidden_sizes, mean, std)
    weights = np.array([len(c.y) for c in clients], dtype=np.float64)
    return clients, model, template, torch.Generator().manual_seed(seed), weights / weights.sum()


def fedavg(clients: list[Client], cfg: FedAvgConfig | None = None, *, n_classes: int,
           init: Classifier | None = None, rounds_per_call: int | None = None, on_round=None) -> TrainResult:
    """Run FedAvg over `clients` (all participate every round) starting from `init` (or a fresh,
    seeded network); `n_classes` is the task's class count. The standardization is (re)computed
    federatedly from these clients."""
    cfg = cfg or FedAvgConfig()
    clients, model, template, generator, weights = federation(clients, n_classes, cfg.hidden_sizes, cfg.seed)
    if init is not None:
        state = {k: v for k, v in init.state_dict().items() if k not in ("mean", "std")}
        model.load_state_dict(state, strict=False)
    history = []
    for r in range(rounds_per_call or cfg.rounds):
        global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        states = [_local_train(global_state, template, c, cfg, generator) for c in clients]
        averaged = {k: sum(float(w) * s[k] for w, s in zip(weights, states)) if k not in ("mean", "std") else global_state[k]
                    for k in global_state}
        model.load_state_dict(averaged)
        model.eval()
        with torch.no_grad():
            loss = float(sum(float(w) * nn.functional.cross_entropy(
                model(torch.as_tensor(c.X, dtype=torch.float32)), torch.as_tensor(c.y)).item()
                for w, c in zip(weights, clients)))
        history.append({"round": r + 1, "train_loss": loss})
        if on_round:
            on_round(r + 1, loss)
    model.eval()
    return TrainResult(model=model, history=history, best_epoch=len(history), n_train=int(sum(len(c.y) for c in clients)))
