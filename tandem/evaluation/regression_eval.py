"""`tandem evaluate` for a regression task: the one harness (`tandem.evaluation.protocol`) over
leave-group-out folds x seeds, errors in target units; its claims, report and MLflow run.

For each fold (every user of the task's data set never shares in exactly one) and each seed, on the
fold's never-sharing users and their later rows (`personalization.local_split`, the same rows for
every method), the methods the regression kind compares (`tandem.evaluation.methods`):

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
from pathlib import Path

import numpy as np

from tandem.device.update_policy import UpdatePolicy
from tandem.evaluation.protocol import ProtocolConfig, _t95, run_protocol, summarize
from tandem.evaluation.tuning import train_for_fold
from tandem.fleet.users import task_fleet
from tandem.release.params import DeviceUpdateConfig
from tandem.release.tracker import Tracker
from tandem.task import Task
from tandem.training.device_update import policy_for

METHODS = ("generic", "personalized", "own_mean", "local_only")
LABELS = {"generic": "Tandem generic (server model on shared rows)",
          "personalized": "Tandem personalized on the device",
          "own_mean": "the user's own mean (no model)",
          "local_only": "local only (a regressor on the user's labelled rows)"}
# the harness's names for Tandem's own model -> this report's (kept: evaluation.json's keys)
RENAMED = {"tandem_generic": "generic", "tandem_personalized": "personalized"}


def _renamed(run: dict) -> dict:
    methods = {}
    for key, per_user in run["methods"].items():
        stem, _, metric = key.rpartition("_")
        methods[f"{RENAMED.get(stem, stem)}_{metric}"] = per_user
    return {**run, "methods": methods}


def paired_errors(summary: dict, a: str, b: str) -> dict:
    """MAE of a minus MAE of b per user (means over seeds), target units: below zero, a is better."""
    users = sorted(summary[a]["per_user"])
    d = np.array([summary[a]["per_user"][u] - summary[b]["per_user"][u] for u in users])
    half = _t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"a": a, "b": b, "mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)],
            "users": len(d), "a_better": int((d < -1e-12).sum()), "a_worse": int((d > 1e-12).sum()),
            "worse_share": float((d > 1e-12).mean())}


def evaluate(task: Task, folds: int = 3, seeds: int = 1, users=None, log=print, fraction: float = 0.5,
             labelled_per_user: int | None = None, policy: UpdatePolicy | None = None, workers: int | None = None) -> dict:
    """Every (fold, seed) run of the task's data set (or `users`), the summary, paired comparisons and
    claims. `workers`: processes (None: one per core)."""
    labelled = labelled_per_user or task.evaluation.labelled_per_user
    cfg = ProtocolConfig(policy=policy or policy_for(task), folds=folds, seeds=seeds, fraction=fraction,
                         labelled_per_user=labelled)
    users = users if users is not None else task_fleet(task)
    pick = train_for_fold(task, folds)  # a `tandem tune` study's choice per fold, else the task's own
    t = time.perf_counter()
    runs = [_renamed(r) for r in run_protocol(task, users, cfg, pick, DeviceUpdateConfig.for_task(task), log=log,
                                               workers=workers)]
    summary = summarize(runs)
    comparisons = {f"personalized_vs_{b}": paired_errors(summary, "personalized_mae", f"{b}_mae")
                   for b in ("generic", "own_mean", "local_only")}
    g, p = summary["generic_mae"], summary["personalized_mae"]
    vs = comparisons["personalized_vs_generic"]
    claims = {"task": task.tag, "task_name": task.name, "target": task.target.name, "unit": task.target.unit,
              "folds": folds, "seeds": seeds, "users": len(g["per_user"]),
              "labelled_per_user": labelled,
              **{f"{m}_{e}_mean": summary[f"{m}_{e}"]["mean"] for m in METHODS for e in ("mae", "rmse")},
              "generic_mae_sd_over_seeds": g["sd_over_seeds"], "personalized_mae_sd_over_seeds": p["sd_over_seeds"],
              "personalization_mae_change": vs["mean"], "personalization_mae_change_ci95": vs["ci95"],
              "personalization_harmed_share": vs["worse_share"]}
    claims["targets"] = task_targets(task, claims)
    return {"schema": "tandem/evaluation-regression/v1", "runs": runs, "summary": summary,
            "comparisons": comparisons, "claims": claims,
            "config": {"folds": folds, "seeds": seeds, "fraction": fraction,
                       "labelled_per_user": labelled, "policy": cfg.policy.as_dict(),
                       "train": pick(0).model_dump(mode="json"),
                       "train_per_fold": {f: pick(f).model_dump(mode="json") for f in range(folds)}},
            "seconds_total": time.perf_counter() - t}


def task_targets(task: Task, claims: dict) -> dict[str, bool]:
    """The task's own targets (task.yaml `evaluation.targets`): only those it sets are graded."""
    t = task.evaluation.targets
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
    ax.set_ylabel(f"MAE ({result['claims']['target']}), lower is better", fontsize=8)
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
        run_name=f"evaluate-{c['task_name']}-{c['folds']}x{c['seeds']}",
        params={k: config[k] for k in ("folds", "seeds", "fraction", "labelled_per_user", "policy")},
        tags={"tandem.kind": "evaluation", "tandem.protocol": "folds-x-seeds", "tandem.task": c["task"]},
        experiment="tandem/evaluation")
    tracker.log_metrics(rid, {k: v for k, v in c.items() if isinstance(v, float)})
    tracker.log_files(rid, {Path(p).name: Path(p).read_bytes() for p in files.values()}, "report")
    tracker.end_run(rid)
    return rid
