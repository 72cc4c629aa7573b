"""The one evaluation harness: leave-group-out folds x seeds, every claim as mean ± sd with a paired
per-user comparison, for both task kinds.

For each fold (every user of the task's data set never shares in exactly one) and each seed, on the
fold's never-sharing users and their held-out test rows (identical for every method), every method the
task's kind compares (`kind.protocol_methods`, from the registry `tandem.evaluation.methods.METHODS`)
fits a model on the fold's sharing users, a never-sharing user personalizes it on its labelled rows,
and its held-out rows score it (the kind's metrics):

* tandem: the server model, trained on the sharing users' shared rows only (the fold's TrainConfig:
  the task's, or its folder's `tuned_models.json` chosen on that fold's sharing users), scored as is
  (generic) and personalized on the device by the app's policy (`device.update_policy`);
* local only: a network trained on exactly the user's labelled rows;
* a classifier: FedAvg on the shared rows (the server's data volume) and on all local pool rows
  (reported apart), FedProx and FedPer on the shared rows; each then personalized by the same policy;
* a regressor: the user's own mean of its labelled rows.

Budgets: a classifier's 20 labelled rows per user and 5 / 10 / 20 per class; a regressor's one
per-user budget (task.yaml `evaluation.labelled_per_user`). Seeds change model initialization,
validation split, shuffling and FL client order; folds change who shares. Paired comparisons are per
(fold, seed, user); their 95 % CI is over users after averaging the seeds (users are the independent units).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tandem.device.update_policy import UpdatePolicy
from tandem.evaluation.methods import METHODS, Fold
from tandem.evaluation.protocol_data import fold_split, sides
from tandem.release.params import DeviceUpdateConfig
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.personalization import pick_labelled

BUDGETS = {"u20": {"per_user": 20}, "pc5": {"per_class": 5}, "pc10": {"per_class": 10}, "pc20": {"per_class": 20}}


def layers_for(task: Task, train: model.TrainConfig, all_layers: bool | None) -> list[str]:
    """The dense layers the device updates: every one or the head only; None: what the task ships."""
    if all_layers is None:
        return task.model.updatable_layers(len(train.hidden_sizes))
    return model.dense_layer_names(len(train.hidden_sizes)) if all_layers else ["head"]


@dataclass
class ProtocolConfig:
    policy: UpdatePolicy  # the app's update policy (`policy_for(task)` personalizes as the task's devices do)
    folds: int = 3
    seeds: int = 1
    fraction: float = 0.5
    budgets: tuple[str, ...] = ("u20", "pc5", "pc10", "pc20")
    fl_rounds: int = 30
    fl_local_epochs: int = 2
    fedprox_mu: float = 0.01
    fl_budgets: tuple[str, ...] = ("u20", "pc20")  # FL bases are personalized at these budgets
    update_all_layers: bool | None = None  # every dense layer updatable, or the head only; None: as the task ships
    labelled_per_user: int | None = None  # one unnamed per-user budget instead of `budgets` (a regression task's)

    def plan(self, rival: bool) -> dict[str | None, dict]:
        """The labelled budgets a method is personalized at: name -> `pick_labelled` arguments."""
        if self.labelled_per_user is not None:
            return {None: {"per_user": self.labelled_per_user}}
        return {b: BUDGETS[b] for b in (self.fl_budgets if rival else self.budgets)}


def run_one(task: Task, users, fold: int, seed: int, cfg: ProtocolConfig, train: model.TrainConfig,
            device: DeviceUpdateConfig, log=print) -> dict:
    """Per-user scores of every method for one (fold, seed). Names: `<method>_generic` (the fitted
    model as is), `<method>_personalized[_<budget>]`, `<method>[_<budget>]` for a method without a
    shared model; a kind with several metrics appends `_<metric>`."""
    kind = kind_of(task)
    sharers, evaluators = fold_split(users, fold, cfg.folds)
    S, E = sides(sharers, cfg.fraction, kind), sides(evaluators, None, kind)
    train = train.model_copy(update={"seed": seed, "updatable_layers": layers_for(task, train, cfg.update_all_layers)})
    context = Fold(task, kind, S, seed, train, device, cfg.policy, cfg.fl_rounds, cfg.fl_local_epochs, cfg.fedprox_mu)
    methods = {name: METHODS[name] for name in kind.protocol_methods}
    out: dict[str, dict[str, float]] = {}
    info: dict = {"epochs": {}, "chosen": {}, "training_rows": int(sum(len(s.shared) for s in S))}

    def record(name: str, scores: dict[str, dict[str, float]]) -> None:
        metrics = next(iter(scores.values()))
        for metric in metrics:
            out[name if len(metrics) == 1 else f"{name}_{metric}"] = {u: v[metric] for u, v in scores.items()}

    t0 = time.perf_counter()
    fitted = {name: m.fit(context) for name, m in methods.items()}
    info["seconds_training"] = time.perf_counter() - t0
    for name, m in methods.items():
        base = fitted[name]
        if base is not None:
            record(f"{name}_generic", {s.user.user_id: m.evaluate(context, base.model.predict, s) for s in E})
        for b, pick in cfg.plan(m.rival).items():
            scores, epochs, chosen = {}, {}, {}
            for s in E:
                personal = m.personalize(context, base, s, pick_labelled(s.user.labels, s.pool, **pick))
                scores[s.user.user_id], epochs[s.user.user_id] = m.evaluate(context, personal.predict, s), personal.epochs
                chosen[s.user.user_id] = personal.method
            stem = f"{name}_personalized" if base is not None else name
            record(stem if b is None else f"{stem}_{b}", scores)
            if base is not None:
                info["epochs"][name if b is None else f"{name}_{b}"] = epochs
                info["chosen"][name if b is None else f"{name}_{b}"] = chosen
    info["seconds"] = time.perf_counter() - t0
    run = {"fold": fold, "seed": seed, "users": [s.user.user_id for s in E], "methods": out, "info": info}
    log(progress_line(run, kind.headline))
    return run


def progress_line(run: dict, headline: str) -> str:
    """One finished (fold, seed): Tandem's generic and personalized means, and its seconds."""
    shown = {k.removeprefix("tandem_"): np.mean(list(v.values())) for k, v in run["methods"].items()
             if k.startswith("tandem_") and k.endswith(("_generic", "_u20", f"_{headline}"))}
    return (f"fold {run['fold']} seed {run['seed']}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
            + f" ({run['info']['seconds']:.0f} s)")


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
    worse = d[d < -1e-9]
    return {"a": a, "b": b, "mean_points": float(d.mean()), "ci95_points": [float(d.mean() - half), float(d.mean() + half)],
            "users": len(d), "a_better": int((d > 1e-9).sum()), "a_worse": len(worse),
            "worse_share": float((d < -1e-9).mean()),
            # the harm's size: the mean loss of the users a harms, and the worst one's (0 when none)
            "worse_mean_points": float(worse.mean()) if len(worse) else 0.0,
            "worst_points": float(d.min()) if len(d) else 0.0}


def harmed_share(runs: list[dict], a: str, b: str) -> float:
    """Share of (fold, seed, user) cases where a is below b: harm as one user sees it in one run."""
    d = [r["methods"][a][u] - r["methods"][b][u] for r in runs for u in r["methods"][a]]
    return float(np.mean(np.array(d) < -1e-9))


def run_protocol(task: Task, users, cfg: ProtocolConfig, train_for_fold, device: DeviceUpdateConfig, log=print,
                 partial=None, workers: int | None = 1) -> list[dict]:
    """All (fold, seed) runs of the task's `users`, seed-major. `partial`: a JSON-lines file that gets
    each run as it finishes (a long run interrupted keeps what it measured). `workers` (None: one per
    core, `worker_count`) > 1: that many processes, one (fold, seed) each at a time, torch on one thread
    in each; a run is seeded by its own (fold, seed) alone, so it is the same run as in one process with
    torch on one thread."""
    for u in users:
        u.features  # featurize once  # noqa: B018
    order = [(f, s) for s in range(cfg.seeds) for f in range(cfg.folds)]  # seed-major: a finished seed covers every user
    workers = worker_count(workers, len(order))
    runs = []

    def keep(run: dict) -> None:
        runs.append(run)
        if partial is not None:
            with open(partial, "a") as fh:
                fh.write(json.dumps(run) + "\n")

    if workers <= 1:
        for f, s in order:
            keep(run_one(task, users, f, s, cfg, train_for_fold(f), device, log))
        return runs
    headline = kind_of(task).headline
    # spawn, not fork: a forked torch can hang on its thread pool; the users travel once per worker
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                             initargs=(task, users, cfg, device)) as pool:
        pending = [pool.submit(_worker_run, f, s, train_for_fold(f)) for f, s in order]
        try:
            for done in as_completed(pending):
                keep(done.result())
                log(progress_line(runs[-1], headline))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed run stops the rest (the finished ones are kept)
            raise
    return sorted(runs, key=lambda r: (r["seed"], r["fold"]))


def worker_count(requested: int | None, runs: int) -> int:
    """Processes for `runs` (fold, seed) runs: as requested, else one per core, never more than runs.
    Each process runs torch on one thread (small networks: more threads only contend)."""
    return max(1, min(requested or os.cpu_count() or 1, runs))


_WORKER: dict = {}


def _worker_start(task: Task, users, cfg: ProtocolConfig, device: DeviceUpdateConfig) -> None:
    # one thread for torch and for the BLAS/OpenMP pools numpy and torch load: two processes that each
    # start a pool per core ran a run 2.7x slower than one process alone (measured: 107 s against 40 s)
    torch.set_num_threads(1)
    threadpool_limits(1)
    _WORKER.update(task=task, users=users, cfg=cfg, device=device)


def _worker_run(fold: int, seed: int, train: model.TrainConfig) -> dict:
    w = _WORKER
    return run_one(w["task"], w["users"], fold, seed, w["cfg"], train, w["device"], log=lambda _line: None)


def analyse(runs: list[dict], cfg: ProtocolConfig) -> dict:
    """Summary and paired comparisons of finished runs."""
    summary = summarize(runs)
    comparisons = {}
    for b in cfg.budgets:
        comparisons[f"personalized_{b}_vs_generic"] = {**paired(summary, f"tandem_personalized_{b}", "tandem_generic"),
                                                       "harmed_share_runs": harmed_share(runs, f"tandem_personalized_{b}", "tandem_generic")}
        comparisons[f"personalized_{b}_vs_local_only"] = paired(summary, f"tandem_personalized_{b}", f"local_only_{b}")
    growth = [b for b in ("pc5", "pc10", "pc20") if b in cfg.budgets]  # more labels per class, step by step
    for fewer, more in zip(growth, growth[1:]):
        comparisons[f"personalized_{more}_vs_{fewer}"] = paired(summary, f"tandem_personalized_{more}",
                                                                f"tandem_personalized_{fewer}")
    for fl in ("fedavg", "fedprox", "fedper", "fedavg_all_local"):
        for b in cfg.fl_budgets:
            comparisons[f"personalized_{b}_vs_{fl}"] = paired(summary, f"tandem_personalized_{b}", f"{fl}_personalized_{b}")
        comparisons[f"generic_vs_{fl}"] = paired(summary, "tandem_generic", f"{fl}_generic")
    return {"runs": runs, "summary": summary, "comparisons": comparisons}
