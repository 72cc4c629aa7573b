"""`tandem evaluate --folds F --seeds S`: the protocol's result, its claims, report and plots.

Writes ``evaluation.json`` (every per-user number of every run, the summary, the paired
comparisons, the claims) and ``evaluation.md`` with PNG plots into a folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tandem.device.update_policy import UpdatePolicy
from tandem.evaluation.protocol import ProtocolConfig, analyse, layers_for, run_protocol
from tandem.evaluation.tuning import train_for_fold
from tandem.fleet.users import task_fleet
from tandem.release.params import DeviceUpdateConfig
from tandem.release.tracker import Tracker
from tandem.task import Task
from tandem.training.device_update import policy_for

FL = ("fedavg", "fedprox", "fedper")  # like for like: the server's data volume


def evaluate(task: Task, folds: int = 3, seeds: int = 1, policy: UpdatePolicy | None = None, users=None, log=print,
             reports_dir: Path | None = None, workers: int | None = None, **config) -> dict:
    """The task's folds x seeds protocol (a classification task). `users`: the task's data set unless
    given. `reports_dir`: where each finished (fold, seed) run is appended as it ends
    (protocol_runs.<folds>x<seeds>.jsonl), so an interrupted run keeps what it measured. `workers`:
    processes (None: one per core)."""
    cfg = ProtocolConfig(folds=folds, seeds=seeds, policy=policy or policy_for(task), **config)
    t = time.perf_counter()
    pick = train_for_fold(task, folds)
    partial = None
    if reports_dir is not None:
        partial = Path(reports_dir) / f"protocol_runs.{folds}x{seeds}.jsonl"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
    users = users if users is not None else task_fleet(task)
    runs = run_protocol(task, users, cfg, pick, DeviceUpdateConfig.for_task(task), log=log, partial=partial,
                        workers=workers)
    result = analyse(runs, cfg)
    result["claims"] = claims(task, result, cfg)
    result["config"] = _config(task, cfg, pick)
    result["schema"] = "tandem/evaluation/v2"
    result["seconds"] = result["seconds_total"] = time.perf_counter() - t
    return result


def from_partial(task: Task, path, folds: int, policy: UpdatePolicy | None = None, **config) -> dict:
    """The result of the complete seeds in a protocol_runs JSON-lines file (an interrupted run)."""

    runs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    complete = [s for s in sorted({r["seed"] for r in runs}) if sum(r["seed"] == s for r in runs) == folds]
    runs = [r for r in runs if r["seed"] in complete]
    cfg = ProtocolConfig(folds=folds, seeds=len(complete), policy=policy or policy_for(task), **config)
    result = analyse(runs, cfg)
    result["claims"] = claims(task, result, cfg)
    pick = train_for_fold(task, folds)
    result["config"] = _config(task, cfg, pick)
    result["schema"] = "tandem/evaluation/v2"
    result["seconds_total"] = sum(r["info"]["seconds"] for r in runs)
    result["interrupted"] = {"file": str(path), "complete_seeds": complete}
    return result


def _config(task: Task, cfg: ProtocolConfig, pick) -> dict:
    return {"folds": cfg.folds, "seeds": cfg.seeds, "fraction": cfg.fraction, "budgets": list(cfg.budgets),
            "fl_budgets": list(cfg.fl_budgets), "fl_rounds": cfg.fl_rounds,
            "fl_local_epochs": cfg.fl_local_epochs, "fedprox_mu": cfg.fedprox_mu,
            "update_all_layers": len(layers_for(task, pick(0), cfg.update_all_layers)) > 1, "policy": cfg.policy.as_dict(),
            "train_per_fold": {f: pick(f).model_dump(mode="json") for f in range(cfg.folds)}}


def claims(task: Task, result: dict, cfg: ProtocolConfig) -> dict:
    s, c = result["summary"], result["comparisons"]
    g = s["tandem_generic"]
    out = {"generic_mean": g["mean"], "generic_sd_over_seeds": g["sd_over_seeds"],
           "generic_per_fold": _per_fold(result["runs"], "tandem_generic"),
           "folds": cfg.folds, "seeds": cfg.seeds, "users": len(g["per_user"]),
           "task": task.tag, "task_name": task.name, "classes": len(task.target.labels)}
    per_budget = {}
    for b in cfg.budgets:
        vg, vl = c[f"personalized_{b}_vs_generic"], c[f"personalized_{b}_vs_local_only"]
        per_budget[b] = {"personalized_mean": s[f"tandem_personalized_{b}"]["mean"],
                         "personalized_sd_over_seeds": s[f"tandem_personalized_{b}"]["sd_over_seeds"],
                         "gain_points": vg["mean_points"], "gain_ci95_points": vg["ci95_points"],
                         "harmed_share": vg["worse_share"], "harmed_share_runs": vg["harmed_share_runs"],
                         "harmed_mean_points": vg["worse_mean_points"], "harmed_worst_points": vg["worst_points"],
                         "kept_base_share": kept_base_share(result["runs"], b),
                         "knn_share": chosen_share(result["runs"], b, "knn"),
                         "local_only_mean": s[f"local_only_{b}"]["mean"],
                         "vs_local_only_points": vl["mean_points"], "vs_local_only_ci95_points": vl["ci95_points"]}
    out["personalization"] = per_budget
    # does the gain grow with labels? each step's paired difference (more labels - fewer), per user
    steps = {k.removeprefix("personalized_"): v for k, v in c.items()
             if k.startswith("personalized_pc") and "_vs_pc" in k}
    out["growth"] = {k: {"points": v["mean_points"], "ci95_points": v["ci95_points"]} for k, v in steps.items()}
    head = per_budget["u20"]
    fl_means = {f: s[f"{f}_personalized_u20"]["mean"] for f in FL}
    best = max(fl_means, key=fl_means.get)
    out["fl"] = {f: {"generic_mean": s[f"{f}_generic"]["mean"],
                     **{f"personalized_{b}_mean": s[f"{f}_personalized_{b}"]["mean"] for b in cfg.fl_budgets},
                     **{f"tandem_minus_{f}_{b}_points": c[f"personalized_{b}_vs_{f}"]["mean_points"] for b in cfg.fl_budgets},
                     **{f"tandem_minus_{f}_{b}_ci95_points": c[f"personalized_{b}_vs_{f}"]["ci95_points"] for b in cfg.fl_budgets}}
                 for f in (*FL, "fedavg_all_local")}
    out["best_fl_baseline"] = best
    out["best_fl_personalized_u20_mean"] = fl_means[best]
    out["tandem_personalized_u20_mean"] = head["personalized_mean"]
    out["targets"] = {**task_targets(task, g, head), **{
        "per_class_gains_at_least_u20_gain": all(per_budget[b]["gain_points"] >= head["gain_points"]
                                                    for b in per_budget if b.startswith("pc")),
        "beats_local_only_at_every_budget": all(v["vs_local_only_points"] > 0 for v in per_budget.values()),
        "tandem_personalized_at_least_best_fl": head["personalized_mean"] >= fl_means[best],
        "u20_gain_ci95_above_0": head["gain_ci95_points"][0] > 0,
        **({"gain_grows_5_10_20_per_class": all(v["ci95_points"][0] > 0 for v in out["growth"].values())}
           if out["growth"] else {}),
    }}
    return out


def kept_base_share(runs: list[dict], budget: str) -> float:
    """Share of (fold, seed, user) cases whose phone kept the base (the policy gave neither candidate; runs
    recorded before the k-NN candidate: no task B)."""
    if all("chosen" in r["info"] for r in runs):
        return chosen_share(runs, budget, "base")
    import numpy as np

    epochs = [e for r in runs for e in r["info"]["epochs"].get(f"tandem_{budget}", {}).values()]
    return float(np.mean([e == 0 for e in epochs])) if epochs else float("nan")


def chosen_share(runs: list[dict], budget: str, method: str) -> float:
    """Share of (fold, seed, user) cases whose phone got `method` ("base", "fine_tune" or "knn") from the policy."""
    import numpy as np

    chosen = [c for r in runs for c in r["info"].get("chosen", {}).get(f"tandem_{budget}", {}).values()]
    return float(np.mean([c == method for c in chosen])) if chosen else float("nan")


def task_targets(task: Task, generic: dict, u20: dict) -> dict[str, bool]:
    """The task's own numeric targets (task.yaml `evaluation.targets`): only those it sets are graded."""
    t = task.evaluation.targets
    out = {}
    if t.generic_accuracy is not None:
        out[f"generic_mean_at_least_{t.generic_accuracy:g}"] = generic["mean"] >= t.generic_accuracy
    if t.generic_sd_points is not None:
        out[f"generic_sd_over_seeds_at_most_{t.generic_sd_points:g}_points"] = (
            100 * generic["sd_over_seeds"] <= t.generic_sd_points)
    if t.gain_points is not None:
        out[f"u20_gain_at_least_{t.gain_points:g}_points"] = u20["gain_points"] >= t.gain_points
    if t.harmed_share is not None:
        out[f"u20_harmed_at_most_{100 * t.harmed_share:g}_percent"] = u20["harmed_share"] <= t.harmed_share
    return out


def _per_fold(runs: list[dict], method: str) -> dict:
    import numpy as np

    folds = sorted({r["fold"] for r in runs})
    return {str(f): float(np.mean([np.mean(list(r["methods"][method].values())) for r in runs if r["fold"] == f]))
            for f in folds}


# ---- report ----------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _plots(result: dict, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, c = result["summary"], result["claims"]
    files = {}
    budgets = list(c["personalization"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = range(len(budgets))
    ax.errorbar(xs, [100 * c["personalization"][b]["personalized_mean"] for b in budgets],
                yerr=[100 * c["personalization"][b]["personalized_sd_over_seeds"] for b in budgets], fmt="o-", label="Tandem personalized")
    ax.plot(xs, [100 * c["personalization"][b]["local_only_mean"] for b in budgets], "s--", label="local only")
    ax.axhline(100 * c["generic_mean"], color="gray", lw=1, label="Tandem generic")
    for f in FL:
        ax.plot([budgets.index(b) for b in result["config"]["fl_budgets"]],
                [100 * s[f"{f}_personalized_{b}"]["mean"] for b in result["config"]["fl_budgets"]], "x:", label=f"{f} personalized")
    ax.set_xticks(list(xs), [{"u20": "20/user", "pc5": "5/act", "pc10": "10/act", "pc20": "20/act"}.get(b, b) for b in budgets])
    ax.set_ylabel("accuracy (%) on never-sharing users")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files["budgets.png"] = out / "budgets.png"
    fig.savefig(files["budgets.png"], dpi=110)
    plt.close(fig)

    gen, per = s["tandem_generic"]["per_user"], s["tandem_personalized_u20"]["per_user"]
    users = list(gen)
    gains = [100 * (per[u] - gen[u]) for u in users]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(range(len(users)), gains, color=["#55a868" if g >= 0 else "#c44e52" for g in gains])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(users)), [u.split("-")[-1] for u in users], fontsize=7)
    ax.set_xlabel("user (each never shares in its fold)")
    ax.set_ylabel("gain, 20 labels (points)")
    fig.tight_layout()
    files["gain_per_user.png"] = out / "gain_per_user.png"
    fig.savefig(files["gain_per_user.png"], dpi=110)
    plt.close(fig)
    return files


def table(n_classes: int) -> list[tuple[str, str]]:
    """(method, label) rows of the report's table; the per-class budgets say their total for the task's classes."""
    totals = {f"t{per_class}": per_class * n_classes for per_class in (5, 10, 20)}
    return [(k, label.format(**totals)) for k, label in TABLE]


TABLE = [("tandem_generic", "Tandem generic (server model on shared windows)"),
         ("tandem_personalized_u20", "Tandem personalized, 20 labelled windows / user"),
         ("tandem_personalized_pc5", "Tandem personalized, 5 / class ({t5})"),
         ("tandem_personalized_pc10", "Tandem personalized, 10 / class ({t10})"),
         ("tandem_personalized_pc20", "Tandem personalized, 20 / class ({t20})"),
         ("local_only_u20", "local only, 20 / user"), ("local_only_pc5", "local only, 5 / class"),
         ("local_only_pc10", "local only, 10 / class"), ("local_only_pc20", "local only, 20 / class"),
         ("fedavg_generic", "FedAvg (shared windows)"), ("fedavg_personalized_u20", "FedAvg + policy, 20 / user"),
         ("fedavg_personalized_pc20", "FedAvg + policy, 20 / class"),
         ("fedprox_generic", "FedProx (shared windows)"), ("fedprox_personalized_u20", "FedProx + policy, 20 / user"),
         ("fedprox_personalized_pc20", "FedProx + policy, 20 / class"),
         ("fedper_generic", "FedPer (shared windows; mean head)"), ("fedper_personalized_u20", "FedPer + policy, 20 / user"),
         ("fedper_personalized_pc20", "FedPer + policy, 20 / class"),
         ("fedavg_all_local_generic", "FedAvg on all local windows (2x data)"),
         ("fedavg_all_local_personalized_u20", "FedAvg all local + policy, 20 / user"),
         ("fedavg_all_local_personalized_pc20", "FedAvg all local + policy, 20 / class")]


def _ci(interval) -> str:
    return f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def markdown(result: dict, command: str) -> str:
    s, c = result["summary"], result["claims"]
    rows = ["| method | mean accuracy (%) | sd over seeds (points) |", "|---|---:|---:|"]
    rows += [f"| {label} | {_pct(s[k]['mean'])} | {100 * s[k]['sd_over_seeds']:.2f} |"
             for k, label in table(c.get("classes", 0)) if k in s]
    gains = ["| budget | personalized (%) | gain (points) | 95 % CI | harmed users (mean, worst loss) | harmed (fold, seed, user) cases "
             "| base kept | k-NN chosen | vs local only (points) | 95 % CI |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for b, v in c["personalization"].items():
        gains.append(f"| {b} | {_pct(v['personalized_mean'])} | {v['gain_points']:+.2f} | {_ci(v['gain_ci95_points'])} | "
                     f"{100 * v['harmed_share']:.0f} % ({v.get('harmed_mean_points', 0):+.2f}, "
                     f"{v.get('harmed_worst_points', 0):+.2f}) | {100 * v['harmed_share_runs']:.0f} % | "
                     f"{100 * v.get('kept_base_share', float('nan')):.0f} % | "
                     f"{100 * v.get('knn_share', float('nan')):.0f} % | "
                     f"{v['vs_local_only_points']:+.2f} | {_ci(v['vs_local_only_ci95_points'])} |")
    growth = "\n".join(f"* {k.replace('_vs_', ' − ')}: {v['points']:+.2f} points {_ci(v['ci95_points'])}"
                       for k, v in c.get("growth", {}).items())
    fl = ["| rival | generic (%) | personalized 20/user (%) | Tandem − rival, 20/user (points, 95 % CI) | personalized 20/act (%) | Tandem − rival, 20/act |",
          "|---|---:|---:|---|---:|---|"]
    for f, v in c["fl"].items():
        vs = f"tandem_minus_{f}"
        fl.append(f"| {f} | {_pct(v['generic_mean'])} | {_pct(v['personalized_u20_mean'])} | "
                  f"{v[vs + '_u20_points']:+.2f} {_ci(v[vs + '_u20_ci95_points'])} | {_pct(v['personalized_pc20_mean'])} | "
                  f"{v[vs + '_pc20_points']:+.2f} |")
    targets = "\n".join(f"* {k}: **{'yes' if v else 'NO'}**" for k, v in c["targets"].items())
    if not any(k.startswith(("generic_mean_at_least", "u20_gain_at_least")) for k in c["targets"]):
        targets += f"\n\nTask {c.get('task_name', '')} sets no numeric targets (task.yaml `evaluation.targets`): reported, not graded."
    folds = ", ".join(f"fold {k}: {_pct(v)}" for k, v in c["generic_per_fold"].items())
    return f"""# Tandem evaluation ({c['folds']} folds x {c['seeds']} seeds)

Reproduce: `{command}`. Every user is a never-sharing user in exactly one fold; numbers are
means over all {c['users']} users and all seeds; sd is over seeds (each seed's mean over all users).
Paired differences are per user (mean over seeds), 95 % CI over users (Student t).

Generic: **{_pct(c['generic_mean'])} % ± {100 * c['generic_sd_over_seeds']:.2f}** ({folds}).

## Targets

{targets}

## Methods

{chr(10).join(rows)}

## Personalization by labelled budget (Tandem, the app's update policy)

{chr(10).join(gains)}

Does the gain grow with labels (per user, more labels − fewer, 95 % CI)?

{growth or "(no per-class budgets in this run)"}

![budgets](budgets.png)

![gain per user](gain_per_user.png)

## Federated rivals (like for like: the shared windows; FedAvg on all local windows apart)

{chr(10).join(fl)}

Policy: {result['config']['policy']}; all dense layers updatable: {result['config']['update_all_layers']}.
Time: {result['seconds_total']:.0f} s.
"""


def write(result: dict, out_dir, command: str) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"evaluation.json": out / "evaluation.json", "evaluation.md": out / "evaluation.md"}
    files["evaluation.json"].write_text(json.dumps(result, indent=1, default=float))
    files.update(_plots(result, out))
    files["evaluation.md"].write_text(markdown(result, command))
    return files


def log_to_mlflow(settings, result: dict, files: dict) -> str:
    """One run in experiment `tandem/evaluation`: config, claims as metrics, table, plots and JSON."""
    tracker = Tracker(settings)
    config = result["config"]
    rid = tracker.start_run(
        run_name=f"evaluate-{result['claims']['folds']}x{result['claims']['seeds']}",
        params={**{k: config[k] for k in ("folds", "seeds", "fraction", "fl_rounds", "fedprox_mu", "update_all_layers")},
                "policy": config["policy"]},
        tags={"tandem.kind": "evaluation", "tandem.protocol": "folds-x-seeds"}, experiment="tandem/evaluation")
    flat = {"generic_mean": result["claims"]["generic_mean"], "generic_sd_over_seeds": result["claims"]["generic_sd_over_seeds"]}
    for b, v in result["claims"]["personalization"].items():
        flat.update({f"{b}.gain_points": v["gain_points"], f"{b}.harmed_share": v["harmed_share"],
                     f"{b}.personalized_mean": v["personalized_mean"], f"{b}.local_only_mean": v["local_only_mean"]})
    flat.update({f"method.{k}": v["mean"] for k, v in result["summary"].items()})
    tracker.log_metrics(rid, flat)
    tracker.log_files(rid, {Path(p).name: Path(p).read_bytes() for p in files.values()}, "report")
    tracker.end_run(rid)
    return rid
