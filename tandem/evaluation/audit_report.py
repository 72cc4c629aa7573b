"""The privacy audit's outputs: ``audit.json``, ``audit.md`` (the privacy/utility table) and one
MLflow run in experiment ``tandem/privacy-audit``; `run_and_record` is the whole `tandem audit` step."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tandem.evaluation.privacy_audit import AuditParams, run_audit
from tandem.evaluation.tracking import start_report_run
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task import Task


def _eps(v) -> str:
    return "∞ (no DP)" if v is None else f"{v:.3g}"


def table(result: dict) -> str:
    p = result["params"]
    lines = [(f"Per-user epsilon at delta = {p['delta']:g} (dp-accounting PLD over all of a user's shared windows); "
              f"model epsilon: user-level DP-SGD at the same delta. Accuracy on {result['users']['evaluation']} "
              f"never-sharing users; re-identification over {result['users']['sharing']} sharing users."), "",
             ("| form | per-user ε | model ε | generic % | personalized % | re-id top-1 % (chance) | QI recovered % (guess) "
              "| MIA loss AUC (windows) | MIA loss AUC (users) | MIA shadow AUC |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["forms"]:
        model_eps = (r.get("model_privacy") or {}).get("epsilon")
        lines.append(
            f"| {r['form']} | {_eps(r['user_epsilon_max'])} | {'—' if model_eps is None else f'{model_eps:.3g}'} "
            f"| {100 * r['generic']:.1f} | {100 * r['personalized']:.1f} "
            f"| {100 * r['reid_top1']:.0f} ({100 * r['reid_chance']:.0f}) "
            f"| {100 * r['attribute']['mean_recovered']:.0f} ({100 * r['attribute']['mean_baseline']:.0f}) "
            f"| {r['mia_window_loss_auc']:.3f} | {r['mia_user_loss_auc']:.3f} | {r['mia_shadow_auc']:.3f} |")
    return "\n".join(lines)


def write(result: dict, out_dir: Path, command: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result["params"].get("name", "audit")
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps(result, indent=1, default=str))
    forms = "\n".join(f"- **{r['form']}**: {r['description']}" for r in result["forms"])
    md.write_text(f"# Privacy audit\n\nReproduce: `{command}` ({result['seconds']:.0f} s)\n\n{table(result)}\n\n{forms}\n")
    return {"json": js, "md": md}


def metric_name(form: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", form)


def log_audit(tracker: Tracker, result: dict, files: dict[str, Path]) -> str:
    run_id = start_report_run(tracker, "privacy-audit", "audit", result, "tandem/privacy-audit")
    for r in result["forms"]:
        tracker.log_metrics(run_id, {
            "user_epsilon": r["user_epsilon_max"], "model_epsilon": (r.get("model_privacy") or {}).get("epsilon"),
            "generic": r["generic"], "personalized": r["personalized"], "reid_top1": r["reid_top1"],
            "reid_chance": r["reid_chance"], "qi_recovered": r["attribute"]["mean_recovered"],
            "mia_window_loss_auc": r["mia_window_loss_auc"], "mia_user_loss_auc": r["mia_user_loss_auc"],
            "mia_shadow_auc": r["mia_shadow_auc"]}, prefix=f"{metric_name(r['form'])}.")
    tracker.log_files(run_id, {p.name: p.read_bytes() for p in files.values()}, "audit")
    tracker.end_run(run_id)
    return run_id


def run_and_record(settings: Settings, task: Task, params: AuditParams, command: str, track: bool = True, log=print,
                   link_run: str | None = None) -> dict:
    """`tandem audit` of the task: run it, write the report, log the MLflow run (and tag `link_run`,
    e.g. the evaluation's run, with it)."""
    result = run_audit(task, params, log=log)
    files = write(result, settings.home / "reports", command)
    run_id = None
    if track:
        tracker = Tracker(settings)
        run_id = log_audit(tracker, result, files)
        if link_run:
            tracker.set_tags(link_run, {"tandem.privacy_audit_run": run_id})
    return {"result": result, "md": str(files["md"]), "json": str(files["json"]), "mlflow_run_id": run_id}
