"""`tandem evaluate` for a regression task: leave-group-out folds x seeds, errors in target units.

For each fold (every user of the task's data set never shares in exactly one) and each seed, on the
fold's never-sharing users and their later rows (`personalization.local_split`, the same rows for
every method):

* generic: the server model, trained on the sharing users' shared rows (the task's model defaults);
* personalized: that base after the app's on-device update (`device.update_policy`) on the user's
  `labelled_per_user` labelled earlier rows (the task's evaluation budget);
* own mean: the mean of those labelled rows (what a device can do alone without any model);
* local only: a regressor of the same shape trained on those labelled rows alone.

Tandem's federated rivals train with cross-entropy (classifiers only), so they are not compared here.
Claims: MAE and RMSE as mean ± sd over seeds; paired per-user MAE differences with a 95 % CI over
users; the share of users whose error the on-device update raises.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tandem.contract.features import TASK
from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy, personalize
from tandem.evaluation.protocol import _t95, summarize, task_policy
from tandem.evaluation.protocol_data import fold_split, sides
from tandem.fleet.users import task_fleet
from tandem.release.params import DeviceUpdateConfig, RunParams
from tandem.release.tracker import Tracker
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.personalization import pick_labelled
from tandem.training.pretrain import convert

METHODS = ("generic", "personalized", "own_mean", "local_only")
LABELS = {"generic": "Tandem generic (server model on shared rows)",
          "personalized": "Tandem personalized on the device",
          "own_mean": "the user's own mean (no model)",
          "local_only": "local only (a regressor on the user's labelled rows)"}


@dataclass
class RegressionConfig:
    folds: int = 3
    seeds: int = 1
    fraction: float = 0.5  # share of its earlier rows a sharing user shares
    labelled_per_user: int = TASK.evaluation.labelled_per_user
    policy: UpdatePolicy = field(default_factory=task_policy)


def _errors(predicted: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    d = np.asarray(predicted, np.float64) - np.asarray(true, np.float64)
    return float(np.abs(d).mean()), float(np.sqrt((d ** 2).mean()))


def run_one(users, fold: int, seed: int, cfg: RegressionConfig, log=print) -> dict:
    """Per-user MAE and RMSE of every method for one (fold, seed)."""
    sharers, evaluators = fold_split(users, fold, cfg.folds)
    S, E = sides(sharers, cfg.fraction), sides(evaluators, None)
    t0 = time.perf_counter()
    X = np.concatenate([s.X[s.shared] for s in S])
    y = np.concatenate([s.user.labels[s.shared] for s in S]).astype(np.float64)
    groups = np.concatenate([[s.user.user_id] * len(s.shared) for s in S])
    train = model.TrainConfig(seed=seed)
    params = RunParams(train=train, device=DeviceUpdateConfig())
    trained = model.train(X, y, train, groups=groups, regression=True)
    base = DeviceModel.load(convert(trained, params, {}))
    # the policy's rate is stated for the standardized target, as the task's device rate is
    policy = replace(cfg.policy, learning_rate=kind_of(TASK).device_rate(
        cfg.policy.learning_rate, float(trained.model.target_std), train.updatable_layers))
    local_cfg = train.model_copy(update={"epochs": 150, "patience": 20})
    out: dict[str, dict[str, float]] = {f"{m}_{e}": {} for m in METHODS for e in ("mae", "rmse")}
    for s in E:
        u, truth = s.user.user_id, s.user.labels[s.test].astype(np.float64)
        lab = pick_labelled(s.user.labels, s.pool, per_user=cfg.labelled_per_user)
        Xl, yl = s.X[lab], s.user.labels[lab].astype(np.float64)
        local = model.train(Xl, yl, local_cfg, regression=True).model
        predictions = {"generic": base.predict(s.X[s.test]),
                       "personalized": personalize(base, Xl, yl, policy).model.predict(s.X[s.test]),
                       "own_mean": np.full(len(s.test), yl.mean()),
                       "local_only": model.predict_values(local, s.X[s.test])}
        for m, p in predictions.items():
            out[f"{m}_mae"][u], out[f"{m}_rmse"][u] = _errors(p, truth)
    seconds = time.perf_counter() - t0
    log(f"fold {fold} seed {seed}: generic MAE {np.mean(list(out['generic_mae'].values())):.4f}, "
        f"personalized {np.mean(list(out['personalized_mae'].values())):.4f} ({seconds:.0f} s)")
    return {"fold": fold, "seed": seed, "users": [s.user.user_id for s in E], "methods": out,
            "info": {"seconds": seconds, "training_rows": int(len(y))}}


def paired_errors(summary: dict, a: str, b: str) -> dict:
    """MAE of a minus MAE of b per user (means over seeds), target units: below zero, a is better."""
    users = sorted(summary[a]["per_user"])
    d = np.array([summary[a]["per_user"][u] - summary[b]["per_user"][u] for u in users])
    half = _t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"a": a, "b": b, "mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)],
            "users": len(d), "a_better": int((d < -1e-12).sum()), "a_worse": int((d > 1e-12).sum()),
            "worse_share": float((d > 1e-12).mean())}


def evaluate(folds: int = 3, seeds: int = 1, users=None, log=print, **config) -> dict:
    """Every (fold, seed) run of the task's data set, the summary, paired comparisons and claims."""
    cfg = RegressionConfig(folds=folds, seeds=seeds, **config)
    users = users if users is not None else task_fleet()
    t = time.perf_counter()
    runs = [run_one(users, f, s, cfg, log) for s in range(seeds) for f in range(folds)]
    summary = summarize(runs)
    comparisons = {f"personalized_vs_{b}": paired_errors(summary, "personalized_mae", f"{b}_mae")
                   for b in ("generic", "own_mean", "local_only")}
    g, p = summary["generic_mae"], summary["personalized_mae"]
    vs = comparisons["personalized_vs_generic"]
    claims = {"task": TASK.tag, "target": TASK.target.name, "unit": TASK.target.unit,
              "folds": folds, "seeds": seeds, "users": len(g["per_user"]),
              "labelled_per_user": cfg.labelled_per_user,
              **{f"{m}_{e}_mean": summary[f"{m}_{e}"]["mean"] for m in METHODS for e in ("mae", "rmse")},
              "generic_mae_sd_over_seeds": g["sd_over_seeds"], "personalized_mae_sd_over_seeds": p["sd_over_seeds"],
              "personalization_mae_change": vs["mean"], "personalization_mae_change_ci95": vs["ci95"],
              "personalization_harmed_share": vs["worse_share"]}
    claims["targets"] = task_targets(claims)
    return {"schema": "tandem/evaluation-regression/v1", "runs": runs, "summary": summary,
            "comparisons": comparisons, "claims": claims,
            "config": {"folds": folds, "seeds": seeds, "fraction": cfg.fraction,
                       "labelled_per_user": cfg.labelled_per_user, "policy": cfg.policy.as_dict(),
                       "train": model.TrainConfig().model_dump(mode="json")},
            "seconds_total": time.perf_counter() - t}


def task_targets(claims: dict) -> dict[str, bool]:
    """The task's own targets (task.yaml `evaluation.targets`): only those it sets are graded."""
    t = TASK.evaluation.targets
    out = {}
    if t.generic_mae is not None:
        out[f"generic_mae_at_most_{t.generic_mae:g}"] = claims["generic_mae_mean"] <= t.generic_mae
    if t.mae_change is not None:
        out[f"personalization_mae_change_at_most_{t.mae_change:+g}"] = claims["personalization_mae_change"] <= t.mae_change
    if t.harmed_share is not None:
        out[f"harmed_at_most_{100 * t.harmed_share:g}_percent"] = claims["personalization_harmed_share"] <= t.harmed_share
    return out


# ---- report ----------------------------------------------------------------------------------------

def _plot(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    users = list(s["generic_mae"]["per_user"])
    x = np.arange(len(users))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(users) + 2), 3.4))
    for i, m in enumerate(METHODS):
        ax.bar(x + (i - 1.5) * 0.2, [s[f"{m}_mae"]["per_user"][u] for u in users], 0.2, label=LABELS[m])
    ax.set_xticks(x, users, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"MAE ({TASK.target.name}), lower is better", fontsize=8)
    ax.legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "mae_per_user.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result: dict, command: str) -> str:
    s, c = result["summary"], result["claims"]
    rows = ["| method | MAE | sd over seeds | RMSE |", "|---|---:|---:|---:|"]
    rows += [f"| {LABELS[m]} | {s[f'{m}_mae']['mean']:.4f} | {s[f'{m}_mae']['sd_over_seeds']:.4f} | "
             f"{s[f'{m}_rmse']['mean']:.4f} |" for m in METHODS]
    paired = ["| personalized vs | MAE change | 95 % CI | users better | users worse |", "|---|---:|---|---:|---:|"]
    paired += [f"| {LABELS[v['b'][:-4]]} | {v['mean']:+.4f} | [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] | "
               f"{v['a_better']} | {v['a_worse']} |" for v in result["comparisons"].values()]
    targets = "\n".join(f"* {k}: **{'yes' if v else 'NO'}**" for k, v in c.get("targets", {}).items()) or \
        "none set: reported, not graded"
    return f"""# Tandem evaluation, regression task {c['task']} ({c['folds']} folds x {c['seeds']} seeds)

Reproduce: `{command}`. Target: {c['target']} ({c['unit']}). Every user never shares in exactly one
fold; errors are on its later rows, means over all {c['users']} users and all seeds; sd is over seeds.
Each never-sharing user labels {c['labelled_per_user']} of its earlier rows for the on-device update.
Paired differences are per user (mean over seeds), 95 % CI over users (Student t); negative is better.

Generic MAE **{c['generic_mae_mean']:.4f} ± {c['generic_mae_sd_over_seeds']:.4f}**; personalized
**{c['personalized_mae_mean']:.4f} ± {c['personalized_mae_sd_over_seeds']:.4f}**; the update raises
the error of {100 * c['personalization_harmed_share']:.0f} % of users.

## Targets (task.yaml `evaluation.targets`)

{targets}

## Methods

{chr(10).join(rows)}

## Personalization, paired per user

{chr(10).join(paired)}

![MAE per user](mae_per_user.png)

Federated rivals are not compared: Tandem's FedAvg / FedProx / FedPer train classifiers only.
Policy: {result['config']['policy']}. Time: {result['seconds_total']:.0f} s.
"""


def write(result: dict, out_dir, command: str) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"evaluation.json": out / "evaluation.json", "evaluation.md": out / "evaluation.md",
             "mae_per_user.png": _plot(result, out)}
    files["evaluation.json"].write_text(json.dumps(result, indent=1, default=float))
    files["evaluation.md"].write_text(markdown(result, command))
    return files


def log_to_mlflow(settings, result: dict, files: dict) -> str:
    """One run in experiment `tandem/evaluation`: config, claims as metrics, the report and plot."""
    tracker = Tracker(settings)
    c, config = result["claims"], result["config"]
    rid = tracker.start_run(
        run_name=f"evaluate-{TASK.name}-{c['folds']}x{c['seeds']}",
        params={k: config[k] for k in ("folds", "seeds", "fraction", "labelled_per_user", "policy")},
        tags={"tandem.kind": "evaluation", "tandem.protocol": "folds-x-seeds", "tandem.task": c["task"]},
        experiment="tandem/evaluation")
    tracker.log_metrics(rid, {k: v for k, v in c.items() if isinstance(v, float)})
    tracker.log_files(rid, {Path(p).name: Path(p).read_bytes() for p in files.values()}, "report")
    tracker.end_run(rid)
    return rid
