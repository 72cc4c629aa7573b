"""The robust protocol: leave-group-out folds x seeds, every claim as mean ± sd with a paired
per-user comparison.

For each fold (every user of the task's data set never shares in exactly one) and each seed, on the fold's
never-sharing users and their held-out test windows (identical for every method):

* generic: the server model, trained on the sharing users' shared windows only (the fold's tuned
  TrainConfig from the task folder's `tuned_models.json`, chosen on that fold's sharing users);
* personalized: the base updated on the device by the app's policy (`device.update_policy`) with
  20 labelled windows per user, and 5 / 10 / 20 per class;
* local only: a Classifier trained on exactly those labelled windows;
* FedAvg on the shared windows (the server's data volume) and on all local pool windows (reported
  apart), FedProx and FedPer on the shared windows; each then personalized by the same policy.

Seeds change model initialization, validation split, shuffling and FL client order; folds change
who shares. Paired comparisons are per (fold, seed, user); their 95 % CI is over users after
averaging the seeds (users are the independent units).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from tandem.contract.features import CLASSES, TASK
from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy, personalize
from tandem.evaluation.protocol_data import Side, fold_split, server_data, sides
from tandem.fleet.users import task_fleet
from tandem.release.params import RunParams
from tandem.training import model
from tandem.training.federated import Client
from tandem.training.fl_baselines import FLConfig, federate
from tandem.training.personalization import pick_labelled
from tandem.training.pretrain import convert

BUDGETS = {"u20": {"per_user": 20}, "pc5": {"per_class": 5}, "pc10": {"per_class": 10}, "pc20": {"per_class": 20}}


def task_policy(**overrides) -> UpdatePolicy:
    """The app's update policy with the task's device mini-batch size (task.yaml `device.batch_size`):
    the evaluation personalizes as the task's devices do."""
    return UpdatePolicy(**{"mini_batch_size": TASK.device.batch_size, **overrides})


def layers_for(train: model.TrainConfig, all_layers: bool | None) -> list[str]:
    """The dense layers the device updates: every one or the head only; None: what the task ships."""
    if all_layers is None:
        return TASK.model.updatable_layers(len(train.hidden_sizes))
    return model.dense_layer_names(len(train.hidden_sizes)) if all_layers else ["head"]


@dataclass
class ProtocolConfig:
    folds: int = 3
    seeds: int = 1
    fraction: float = 0.5
    budgets: tuple[str, ...] = ("u20", "pc5", "pc10", "pc20")
    fl_rounds: int = 30
    fl_local_epochs: int = 2
    fedprox_mu: float = 0.01
    policy: UpdatePolicy = field(default_factory=task_policy)
    fl_budgets: tuple[str, ...] = ("u20", "pc20")  # FL bases are personalized at these budgets
    update_all_layers: bool | None = None  # every dense layer updatable, or the head only; None: as the task ships


def _acc(predict, side: Side) -> float:
    return float((np.asarray(predict(side.X[side.test])) == side.user.labels[side.test]).mean())


def _convert(net: model.Classifier, train: model.TrainConfig, device) -> DeviceModel:

    layers = model.dense_layer_names(len(net.body)) if len(train.updatable_layers) > 1 else ["head"]
    cfg = train.model_copy(update={"hidden_sizes": net.hidden_sizes, "updatable_layers": layers})
    return DeviceModel.load(convert(model.TrainResult(model=net), RunParams(train=cfg, device=device), {}))


def _torch_predict(net):

    return lambda X: np.array(CLASSES)[model.predict_proba(net, X).argmax(1)]


def run_one(users, fold: int, seed: int, cfg: ProtocolConfig, train: model.TrainConfig, device, log=print) -> dict:
    """Per-user accuracies of every method for one (fold, seed)."""
    sharers, evaluators = fold_split(users, fold, cfg.folds)
    S, E = sides(sharers, cfg.fraction), sides(evaluators, None)
    out: dict[str, dict[str, float]] = {}
    info: dict = {"epochs": {}}
    t0 = time.perf_counter()

    X, y, groups = server_data(S)
    layers = layers_for(train, cfg.update_all_layers)
    train = train.model_copy(update={"seed": seed, "updatable_layers": layers})
    bases = {"tandem": _convert(model.train(X, y, train, groups=groups).model, train, device)}
    fl = FLConfig(rounds=cfg.fl_rounds, local_epochs=cfg.fl_local_epochs, hidden_sizes=list(train.hidden_sizes),
                  seed=seed)
    shared_clients = [Client(s.X[s.shared], s.y[s.shared]) for s in S]
    all_clients = [Client(s.X[s.pool], s.y[s.pool]) for s in S]
    for name, clients, kw in (("fedavg", shared_clients, {}), ("fedavg_all_local", all_clients, {}),
                              ("fedprox", shared_clients, {"mu": cfg.fedprox_mu}),
                              ("fedper", shared_clients, {"personal": ("head",)})):
        fcfg = FLConfig(**{**fl.__dict__, **kw})
        bases[name] = _convert(federate(clients, fcfg, n_classes=len(CLASSES)).model, train, device)
    info["seconds_training"] = time.perf_counter() - t0

    for name, base in bases.items():
        out[f"{name}_generic"] = {s.user.user_id: _acc(base.predict, s) for s in E}
        for b in cfg.budgets if name == "tandem" else cfg.fl_budgets:
            per_user, epochs = {}, {}
            for s in E:
                lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
                p = personalize(base, s.X[lab], s.user.labels[lab], cfg.policy)
                per_user[s.user.user_id], epochs[s.user.user_id] = _acc(p.model.predict, s), p.epochs
            out[f"{name}_personalized_{b}"] = per_user
            info["epochs"][f"{name}_{b}"] = epochs
    local_cfg = train.model_copy(update={"epochs": 150, "patience": 20})
    for b in cfg.budgets:
        per_user = {}
        for s in E:
            lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
            net = model.train(s.X[lab], s.y[lab], local_cfg).model
            per_user[s.user.user_id] = _acc(_torch_predict(net), s)
        out[f"local_only_{b}"] = per_user
    info["seconds"] = time.perf_counter() - t0
    log(f"fold {fold} seed {seed}: generic {np.mean(list(out['tandem_generic'].values())):.4f}, "
        f"personalized u20 {np.mean(list(out['tandem_personalized_u20'].values())):.4f} ({info['seconds']:.0f} s)")
    return {"fold": fold, "seed": seed, "users": [s.user.user_id for s in E], "methods": out, "info": info}


# ---- statistics ----------------------------------------------------------------------------------

def _t95(df: int) -> float:
    """Two-sided 95 % Student t quantile (table; normal beyond 30 degrees of freedom)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 29: 2.045, 30: 2.042}
    if df >= 30:
        return 1.96 if df > 120 else 2.0
    return table.get(df) or table[max(k for k in table if k <= df)]


def summarize(runs: list[dict]) -> dict:
    """Per method: mean over all (fold, seed, user), sd over seeds of the seed's mean over all
    users (each seed covers every user once, across folds), and per-user means over seeds."""
    seeds = sorted({r["seed"] for r in runs})
    methods = sorted(runs[0]["methods"])
    out = {}
    for m in methods:
        per_seed = [np.mean([a for r in runs if r["seed"] == s for a in r["methods"][m].values()]) for s in seeds]
        per_user: dict[str, list[float]] = {}
        for r in runs:
            for u, a in r["methods"][m].items():
                per_user.setdefault(u, []).append(a)
        out[m] = {"mean": float(np.mean(per_seed)), "sd_over_seeds": float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else 0.0,
                  "per_seed": [float(x) for x in per_seed],
                  "per_user": {u: float(np.mean(v)) for u, v in sorted(per_user.items())}}
    return out


def paired(summary: dict, a: str, b: str) -> dict:
    """a - b per user (means over seeds), in points: mean, 95 % CI over users, share of users a harms."""
    users = sorted(summary[a]["per_user"])
    d = np.array([summary[a]["per_user"][u] - summary[b]["per_user"][u] for u in users]) * 100
    half = _t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"a": a, "b": b, "mean_points": float(d.mean()), "ci95_points": [float(d.mean() - half), float(d.mean() + half)],
            "users": len(d), "a_better": int((d > 1e-9).sum()), "a_worse": int((d < -1e-9).sum()),
            "worse_share": float((d < -1e-9).mean())}


def harmed_share(runs: list[dict], a: str, b: str) -> float:
    """Share of (fold, seed, user) cases where a is below b: harm as one user sees it in one run."""
    d = [r["methods"][a][u] - r["methods"][b][u] for r in runs for u in r["methods"][a]]
    return float(np.mean(np.array(d) < -1e-9))


def run_protocol(cfg: ProtocolConfig, train_for_fold, device, users=None, log=print, partial=None) -> dict:
    """All (fold, seed) runs, their summary and the paired comparisons. `partial`: a JSON-lines file
    that gets each run as it finishes (a long run interrupted keeps what it measured)."""

    users = users if users is not None else task_fleet()
    for u in users:
        u.features  # featurize once  # noqa: B018
    t = time.perf_counter()
    runs = []
    for s in range(cfg.seeds):  # seed-major: every finished seed covers every user once
        for f in range(cfg.folds):
            runs.append(run_one(users, f, s, cfg, train_for_fold(f), device, log))
            if partial is not None:
                with open(partial, "a") as fh:
                    fh.write(json.dumps(runs[-1]) + "\n")
    return analyse(runs, cfg) | {"seconds": time.perf_counter() - t}


def analyse(runs: list[dict], cfg: ProtocolConfig) -> dict:
    """Summary and paired comparisons of finished runs."""
    summary = summarize(runs)
    comparisons = {}
    for b in cfg.budgets:
        comparisons[f"personalized_{b}_vs_generic"] = {**paired(summary, f"tandem_personalized_{b}", "tandem_generic"),
                                                       "harmed_share_runs": harmed_share(runs, f"tandem_personalized_{b}", "tandem_generic")}
        comparisons[f"personalized_{b}_vs_local_only"] = paired(summary, f"tandem_personalized_{b}", f"local_only_{b}")
    for fl in ("fedavg", "fedprox", "fedper", "fedavg_all_local"):
        for b in cfg.fl_budgets:
            comparisons[f"personalized_{b}_vs_{fl}"] = paired(summary, f"tandem_personalized_{b}", f"{fl}_personalized_{b}")
        comparisons[f"generic_vs_{fl}"] = paired(summary, "tandem_generic", f"{fl}_generic")
    return {"runs": runs, "summary": summary, "comparisons": comparisons}
