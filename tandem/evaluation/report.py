"""The evaluation report: ``reports/evaluation.json`` (every number, per method, per user and per
round) beside ``reports/evaluation.md`` and its PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TABLE_METHODS = ("generic", "personalized_user", "local_only_u{budget}", "fedavg", "fedavg_personalized_user",
                 "central", "central_personalized_user")


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def table_rows(result: dict) -> list[tuple[str, dict]]:
    budget = result["params"]["per_user_budget"]
    names = [n.format(budget=budget) for n in TABLE_METHODS]
    names += [n for n in result["methods"] if n not in names]
    return [(n, result["methods"][n]) for n in names if n in result["methods"]]


def markdown_table(result: dict) -> str:
    lines = ["| method | mean accuracy (%) | helped / harmed | labelled windows | what it is |",
             "|---|---:|---|---:|---|"]
    for name, m in table_rows(result):
        hh = f"{_pct(m['helped'])} / {_pct(m['harmed'])} %" if "harmed" in m else ""
        lines.append(f"| `{name}` | {_pct(m['mean'])} | {hh} | {m.get('max_labelled', '')} | {m['description']} |")
    return "\n".join(lines)


def _plot_rounds(result: dict, path: Path) -> None:
    rounds = result["rounds"]
    x = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(x, [r["generic"]["mean"] for r in rounds], "o-", label="generic (never-sharing users)")
    ax.plot(x, [r["personalized"]["mean"] for r in rounds], "s-", label="personalized on device")
    if all("fedavg" in r for r in rounds):
        ax.plot(x, [r["fedavg"]["generic"]["mean"] for r in rounds], "^--", label="FedAvg (generic)")
    for r in rounds:
        ax.annotate(f"{r['sharing_users']} sharing", (r["round"], r["generic"]["mean"]), textcoords="offset points",
                    xytext=(0, -14), ha="center", fontsize=7)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_methods(result: dict, path: Path) -> None:
    rows = table_rows(result)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [n for n, _ in rows][::-1]
    means = [m["mean"] for _, m in rows][::-1]
    ax.barh(names, means, color="#4c72b0")
    for i, v in enumerate(means):
        ax.text(v, i, f" {100 * v:.1f}", va="center", fontsize=7)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean accuracy on the evaluation users")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_gain(result: dict, path: Path) -> None:
    generic = result["methods"]["generic"]["per_user"]
    head = result["methods"][result["headline"]]["per_user"]
    users = list(generic)
    gains = [100 * (head[u] - generic[u]) for u in users]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(users)), gains, color=["#55a868" if g >= 0 else "#c44e52" for g in gains])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(users)))
    ax.set_xticklabels([u.split("-")[-1] for u in users], fontsize=7)
    ax.set_xlabel("evaluation user")
    ax.set_ylabel("personalization gain (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curve(points: list[dict], key: str, path: Path, xlabel: str, log: bool = False) -> None:
    points = [p for p in points if "generic" in p]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [p[key] for p in points]
    ax.plot(xs, [p["generic"] for p in points], "o-", label="generic")
    ax.plot(xs, [p["personalized"] for p in points], "s-", label="personalized")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (evaluation users)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict, out_dir: str | Path, command: str = "tandem evaluate") -> dict[str, Path]:
    """Write evaluation.json, evaluation.md and the plots into `out_dir`; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"evaluation.json": out / "evaluation.json"}
    files["evaluation.json"].write_text(json.dumps(result, indent=2, sort_keys=False, default=float))
    plots = {"rounds.png": _plot_rounds, "methods.png": _plot_methods, "gain_per_user.png": _plot_gain}
    for name, fn in plots.items():
        fn(result, out / name)
        files[name] = out / name
    curve_md = []
    for key, label, log in (("fraction", "shared fraction", False), ("epsilon", "DP epsilon", True), ("k", "k (k-anonymity)", True)):
        points = result["curves"].get(key)
        if isinstance(points, list) and any("generic" in p for p in points):
            name = f"privacy_{key}.png"
            _plot_curve(points, key, out / name, label, log)
            files[name] = out / name
            curve_md.append(f"![accuracy against {label}]({name})\n")
            curve_md.append(f"| {label} | generic | personalized | rows |\n|---:|---:|---:|---:|")
            curve_md += [f"| {p[key]} | {_pct(p.get('generic'))} | {_pct(p.get('personalized'))} | {p.get('rows', p.get('error', ''))} |"
                         for p in points]
            curve_md.append("")
        else:
            reason = points.get("unavailable") if isinstance(points, dict) else "no points"
            curve_md.append(f"*Accuracy against {label}: not measured ({reason}).*\n")
    c = result["claims"]
    rounds_md = ["| round | sharing users | snapshot rows | generic (never-sharing) | personalized | helped | harmed | FedAvg |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rounds"]:
        rounds_md.append(f"| {r['round']} | {r['sharing_users']} | {r['snapshot_rows']} | {_pct(r['generic']['mean'])} | "
                         f"{_pct(r['personalized']['mean'])} | {_pct(r['personalization_helped'])} % | "
                         f"{_pct(r['personalization_harmed'])} % | {_pct(r.get('fedavg', {}).get('generic', {}).get('mean'))} |")
    users = result["methods"]["generic"]["per_user"]
    per_user_md = ["| user | " + " | ".join(n for n, _ in table_rows(result)) + " |",
                   "|---|" + "---:|" * len(table_rows(result))]
    for u in users:
        per_user_md.append(f"| {u} | " + " | ".join(_pct(m["per_user"][u]) for _, m in table_rows(result)) + " |")
    p = result["protocol"]
    md = f"""# Tandem evaluation

Source: **{result['params']['source']}**; {len(result['users']['sharing'])} sharing users,
{len(result['users']['evaluation'])} evaluation users who never share. Reproduce: `{command}`.

## Claims

* Personalization with at most {c['personalization_max_labelled']} labelled windows per user: mean accuracy
  {_pct(result['methods']['generic']['mean'])} → {_pct(result['methods'][result['headline']]['mean'])}
  (**{c['personalization_gain_points']:+.1f} points**), harms {_pct(c['personalization_harmed_fraction'])} % of the users
  (≥ 2 points: {'yes' if c['gain_at_least_2_points'] else 'NO'}; harms ≤ a fifth: {'yes' if c['harms_at_most_a_fifth'] else 'NO'}).
* Generic accuracy on never-sharing users across rounds: {_pct(c['generic_first_round'])} → {_pct(c['generic_last_round'])}
  (rises: {'yes' if c['generic_rises_across_rounds'] else 'NO'}).

## Methods (same users, same test windows)

{markdown_table(result)}

![methods](methods.png)

## Rounds

{chr(10).join(rounds_md)}

![rounds](rounds.png)

## Per user

{chr(10).join(per_user_md)}

![personalization gain per user](gain_per_user.png)

## Privacy / utility

{chr(10).join(curve_md)}

## Protocol

* Evaluation users: {p['evaluation_users']}.
* Test windows: {p['test_windows']}.
* Labelled windows: {p['labelled_windows']}.
* On-device update (device runtime, Core ML semantics): layers {p['on_device_update']['layers']},
  optimizer {p['on_device_update']['optimizer']}, overrides {p['on_device_update']['overrides']}.

Timing (s): {result['timing_seconds']}
"""
    files["evaluation.md"] = out / "evaluation.md"
    files["evaluation.md"].write_text(md)
    return files
