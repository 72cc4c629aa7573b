"""Federated rivals, our own implementations (Flower would pull protobuf 6), with the same
Classifier and federated standardization as `tandem.training.federated`:

* FedAvg (McMahan et al. 2017): each round every client starts from the global weights, trains
  `local_epochs` on its data, and the server sets w <- sum_k (n_k / n) w_k.
* FedProx (Li et al. 2020): the same, but client k minimizes F_k(w) + mu/2 ||w - w_global||^2, so a
  local step is w <- w - lr * (grad F_k(w) + mu (w - w_global)) (with SGD; Adam sees the same gradient).
* FedPer (Arivazhagan et al. 2019): base layers are federated (averaged as in FedAvg), the
  personalization layers (here the head) stay on each client and are never averaged. A client that
  never took part gets the global body and, as its starting head, the sample-weighted mean of the
  clients' heads; it then personalizes the head on its own labels like any other base.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tandem.training.federated import Client, federation, train_locally
from tandem.training.model import Classifier, TrainResult


@dataclass
class FLConfig:
    rounds: int = 40
    local_epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    optimizer: str = "adam"  # "adam" (fresh state each round) or "sgd"
    mu: float = 0.0  # FedProx proximal weight; 0 is FedAvg
    personal: tuple[str, ...] = ()  # parameter-name prefixes kept on the clients: ("head",) is FedPer
    seed: int = 0


def is_personal(name: str, cfg: FLConfig) -> bool:
    return any(name == p or name.startswith(p + ".") for p in cfg.personal)


def local_update(net: Classifier, global_state: dict, client: Client, cfg: FLConfig,
                 generator: torch.Generator, personal_state: dict | None = None) -> dict:
    """One client's round: start from the global weights (and its own personal layers), train, return
    the state. The proximal term pulls only the federated (non-personal) parameters."""
    net.load_state_dict({**global_state, **(personal_state or {})})
    params = dict(net.named_parameters())
    anchor = {k: global_state[k].detach().clone() for k in params if not is_personal(k, cfg)}
    opt = (torch.optim.SGD(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
           if cfg.optimizer == "sgd" else
           torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay))

    def proximal():
        return 0.5 * cfg.mu * sum(((params[k] - w0) ** 2).sum() for k, w0 in anchor.items())

    return train_locally(net, opt, client, cfg.local_epochs, cfg.batch_size, generator, proximal if cfg.mu else None)


@dataclass
class FLResult(TrainResult):
    personal_states: list[dict] = field(default_factory=list)  # per client: its personal layers


def federate(clients: list[Client], cfg: FLConfig | None = None, *, n_classes: int) -> FLResult:
    """Run `cfg.rounds` rounds with every client; the returned model is what a newcomer receives.
    `n_classes`: the task's class count (the head's width; a client need not hold every class)."""
    cfg = cfg or FLConfig()
    clients, model, net, generator, w = federation(clients, n_classes, cfg.hidden_sizes, cfg.seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    personal = [{k: v.clone() for k, v in state.items() if is_personal(k, cfg)} for _ in clients]
    history = []
    for r in range(cfg.rounds):
        states = [local_update(net, state, c, cfg, generator, personal[i]) for i, c in enumerate(clients)]
        for i, s in enumerate(states):
            personal[i] = {k: v for k, v in s.items() if is_personal(k, cfg)}
        state = {k: (state[k] if k in ("mean", "std") else sum(float(wi) * s[k] for wi, s in zip(w, states)))
                 for k in state}  # personal entries too: their weighted mean is the newcomer's start
        history.append({"round": r + 1})
    model.load_state_dict(state)
    model.eval()
    return FLResult(model=model, history=history, best_epoch=cfg.rounds, n_train=int(sum(len(c.y) for c in clients)),
                    personal_states=personal)
