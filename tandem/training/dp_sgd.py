"""Central DP for the released model: user-level DP-SGD with Opacus.

The unit is the user (a pseudonym): each step samples users independently with probability q
(Poisson), takes a fixed number of each sampled user's windows, and treats that *user* as one
example for Opacus (input shape (users, windows, features)), so Opacus' per-sample gradients are
per-user gradients, clipped to `max_grad_norm` and noised with sigma * max_grad_norm. Adding or
removing one user's whole data changes one clipped gradient per step: the guarantee is
user-level, (epsilon, delta) from dp-accounting's PLD over the T Poisson-subsampled Gaussian steps
(Opacus' PRV accountant calibrates sigma; dp-accounting states the result).

What else would leak and is avoided: standardization uses the public clipping bounds of the sharing
policy (not the data's mean/std), and there is no early stopping or validation split (a fixed
number of steps, the last weights).

Not done: Opacus' secure_mode (it needs torchcsprng, not in the pins); the Gaussian noise comes
from torch's seeded generator, so the result is reproducible but its noise is not
cryptographically random. Say so wherever the guarantee is quoted for production.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from opacus import GradSampleModule
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from torch import nn

from tandem.privacy.policy import clip_bounds
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.dp_sgd_params import DpSgdConfig


@dataclass
class DpTrainResult(model.TrainResult):
    privacy: dict = field(default_factory=dict)


def public_standardization(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std from the policy's public clipping bounds: no data is spent on them."""
    b = np.array(list(clip_bounds(task).values()))
    return (b[:, 0] + b[:, 1]) / 2, (b[:, 1] - b[:, 0]) / 2


def model_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """User-level epsilon of the T subsampled Gaussian steps (dp-accounting PLD, add/remove one user)."""
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier)), steps)
    return float(acc.get_epsilon(delta))


class _PerUser(nn.Module):
    """The classifier applied to (users, windows, features); per-user mean loss comes outside."""

    def __init__(self, net: model.Classifier):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_user_level(task: Task, X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: model.TrainConfig,
                     cfg: DpSgdConfig, seed: int | None = None) -> DpTrainResult:
    """The task's classifier trained with user-level DP-SGD; `groups` names each row's user (pseudonym)."""
    X, y, groups = np.asarray(X, np.float64), np.asarray(y, np.int64), np.asarray(groups)
    users = list(dict.fromkeys(groups.tolist()))
    if len(users) < 2:
        raise ValueError("user-level DP-SGD needs at least two users")
    rows = [np.flatnonzero(groups == u) for u in users]
    seed = train.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sigma = float(get_noise_multiplier(target_epsilon=cfg.target_epsilon, target_delta=cfg.delta,
                                       sample_rate=cfg.sample_rate, steps=cfg.steps, accountant="prv"))
    mean, std = public_standardization(task)
    net = model.Classifier(X.shape[1], kind_of(task).n_outputs, train.hidden_sizes, mean, std)
    gsm = GradSampleModule(_PerUser(net), batch_first=True, loss_reduction="mean")
    expected = max(1, round(cfg.sample_rate * len(users)))
    optimizer = DPOptimizer(torch.optim.Adam(gsm.parameters(), lr=cfg.learning_rate), noise_multiplier=sigma,
                            max_grad_norm=cfg.max_grad_norm, expected_batch_size=expected, loss_reduction="mean",
                            generator=torch.Generator().manual_seed(seed))
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    history = []
    for step in range(1, cfg.steps + 1):
        chosen = np.flatnonzero(rng.random(len(users)) < cfg.sample_rate)
        if not len(chosen):  # an empty Poisson batch releases nothing; still counted by the accountant
            continue
        idx = np.stack([rng.choice(rows[u], size=cfg.windows_per_user, replace=True) for u in chosen])
        xb, yb = Xt[torch.as_tensor(idx)], yt[torch.as_tensor(idx)]
        logits = gsm(xb)
        per_user = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                               reduction="none").reshape(len(chosen), -1).mean(1)
        # Opacus' "mean" reduction divides by the expected batch size, not the sampled one
        loss = per_user.sum() / expected
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == cfg.steps:
            history.append({"epoch": step, "train_loss": float(per_user.mean())})
    gsm.remove_hooks()
    net.eval()
    for p in net.parameters():  # drop Opacus' bookkeeping so the model pickles and exports cleanly
        p.grad_sample = None
        p.grad = None
    eps = model_epsilon(sigma, cfg.sample_rate, cfg.steps, cfg.delta)
    privacy = {"mechanism": "user-level DP-SGD (Opacus 1.6, Poisson user sampling, per-user clipping)",
               "epsilon": eps, "delta": cfg.delta, "unit": "user (add/remove all of one user's windows)",
               "accountant": "dp-accounting PLD (sigma calibrated with Opacus PRV)",
               "noise_multiplier": sigma, "sample_rate": cfg.sample_rate, "steps": cfg.steps,
               "max_grad_norm": cfg.max_grad_norm, "windows_per_user": cfg.windows_per_user, "users": len(users),
               "secure_rng": False}
    return DpTrainResult(model=net, history=history, best_epoch=cfg.steps, n_train=len(X), privacy=privacy)
