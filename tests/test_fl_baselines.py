"""FedAvg, FedProx and FedPer against their papers' update rules, computed by hand with autograd."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tandem.training.federated import Client
from tandem.training.fl_baselines import FLConfig, federate, local_update
from tandem.training.model import Classifier

rng = np.random.default_rng(0)


def clients(k=3, n=24, d=5):
    return [Client(rng.normal(size=(n + 4 * i, d)) + i, rng.integers(0, 3, n + 4 * i)) for i in range(k)]


def test_fedprox_local_step_is_the_papers_rule():
    """w <- w - lr * (grad F(w) + mu * (w - w_global)), step after step (SGD, full batch)."""
    c = clients(1, n=16)[0]
    cfg = FLConfig(local_epochs=3, batch_size=16, learning_rate=0.1, optimizer="sgd", weight_decay=0.0, mu=0.5,
                   hidden_sizes=[4])
    torch.manual_seed(0)
    net = Classifier(5, 3, [4])
    glob = {k: v.clone() for k, v in net.state_dict().items()}
    got = local_update(net, glob, c, cfg, torch.Generator().manual_seed(0))
    ref = Classifier(5, 3, [4])
    ref.load_state_dict(glob)
    X, y = torch.as_tensor(c.X, dtype=torch.float32), torch.as_tensor(c.y)
    for _ in range(3):
        ref.zero_grad()
        nn.functional.cross_entropy(ref(X), y).backward()
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p -= 0.1 * (p.grad + 0.5 * (p - glob[name]))
    for name, p in ref.named_parameters():
        assert torch.allclose(got[name], p, atol=1e-6), name
    # and mu = 0 is plain gradient descent (FedAvg's local step): a different result
    plain = local_update(net, glob, c, FLConfig(**{**cfg.__dict__, "mu": 0.0}), torch.Generator().manual_seed(0))
    assert not torch.allclose(plain["head.weight"], got["head.weight"])


def test_fedavg_round_is_the_sample_weighted_mean_of_local_models():
    cs = clients(3)
    cfg = FLConfig(rounds=1, local_epochs=1, batch_size=8, hidden_sizes=[6], seed=3)
    result = federate(cs, cfg, n_classes=3)
    # replay: every client from the same initial weights, same generator sequence
    torch.manual_seed(3)
    from tandem.training.federated import federated_stats

    mean, std = federated_stats(cs)
    init = Classifier(5, 3, [6], mean, std)
    glob = {k: v.clone() for k, v in init.state_dict().items()}
    gen = torch.Generator().manual_seed(3)
    work = Classifier(5, 3, [6], mean, std)
    states = [local_update(work, glob, c, cfg, gen) for c in cs]
    n = np.array([len(c.y) for c in cs], dtype=np.float64)
    for name, _ in init.named_parameters():
        want = sum(float(w) * s[name] for w, s in zip(n / n.sum(), states))
        assert torch.allclose(result.model.state_dict()[name], want, atol=1e-6), name


def test_fedper_keeps_heads_local_and_averages_the_body():
    cs = clients(3)
    cfg = FLConfig(rounds=2, local_epochs=1, batch_size=8, hidden_sizes=[6], personal=("head",), seed=1)
    result = federate(cs, cfg, n_classes=3)
    heads = [s["head.weight"] for s in result.personal_states]
    assert len(heads) == 3 and not torch.allclose(heads[0], heads[1])  # never averaged
    assert all(set(s) == {"head.weight", "head.bias"} for s in result.personal_states)
    # replay the second round: body = weighted mean of local bodies; each client restarted from ITS head
    cfg1 = copy.deepcopy(cfg)
    cfg1.rounds = 1
    first = federate(cs, cfg1, n_classes=3)
    from tandem.training.federated import federated_stats

    mean, std = federated_stats(cs)
    work = Classifier(5, 3, [6], mean, std)
    glob = {k: v.clone() for k, v in first.model.state_dict().items()}
    n = np.array([len(c.y) for c in cs], dtype=np.float64)
    w = n / n.sum()
    # round-2 local training from round-1 personal heads; generator state after round 1
    gen = torch.Generator().manual_seed(1)
    for c in cs:  # round 1 consumed one permutation per client
        torch.randperm(len(c.y), generator=gen)
    states = [local_update(work, glob, c, cfg, gen, first.personal_states[i]) for i, c in enumerate(cs)]
    body = sum(float(wi) * s["body.0.weight"] for wi, s in zip(w, states))
    assert torch.allclose(result.model.state_dict()["body.0.weight"], body, atol=1e-6)
    for i, s in enumerate(states):
        assert torch.allclose(result.personal_states[i]["head.weight"], s["head.weight"], atol=1e-6)
    # the newcomer's head is the clients' weighted mean head
    assert torch.allclose(result.model.head.weight, sum(float(wi) * h for wi, h in zip(w, heads)), atol=1e-6)
