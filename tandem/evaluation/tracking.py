"""The evaluation's MLflow run: one run in the ``tandem/evaluation`` experiment with its parameters,
per-round and per-method metrics, the claims and the report files."""

from __future__ import annotations

from pathlib import Path

from tandem.release.publish import code_version
from tandem.release.tracker import Tracker


def start_report_run(tracker: Tracker, kind: str, name: str, result: dict, experiment: str) -> str:
    """An MLflow run for a report (evaluation, privacy audit): its scalar parameters, kind and code version."""
    return tracker.start_run(
        run_name=f"{name}-{result['params']['source']}",
        params={k: v for k, v in result["params"].items() if not isinstance(v, list)},
        tags={"tandem.kind": kind, "code_version": code_version()}, experiment=experiment)


def log_evaluation(tracker: Tracker, result: dict, files: dict) -> str:
    run_id = start_report_run(tracker, "evaluation", "evaluate", result, "tandem/evaluation")
    for r in result["rounds"]:
        tracker.log_metrics(run_id, {
            "round.generic": r["generic"]["mean"], "round.personalized": r["personalized"]["mean"],
            "round.helped": r["personalization_helped"], "round.harmed": r["personalization_harmed"],
            "round.sharing_users": r["sharing_users"], "round.snapshot_rows": r["snapshot_rows"],
            **({"round.fedavg": r["fedavg"]["generic"]["mean"]} if "fedavg" in r else {})}, step=r["round"])
    tracker.log_metrics(run_id, {
        **{f"method.{n}": m["mean"] for n, m in result["methods"].items()},
        **{f"claim.{k}": float(v) for k, v in result["claims"].items()}})
    tracker.log_files(run_id, {Path(p).name: Path(p).read_bytes() for p in files.values()}, "report")
    tracker.end_run(run_id)
    return run_id
