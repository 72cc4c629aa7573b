"""The privacy audit task (`tandem audit`; also the last step of the evaluate flows)."""

from __future__ import annotations

from prefect import get_run_logger, task

from tandem import task as tasks
from tandem.evaluation.audit_report import run_and_record
from tandem.evaluation.privacy_audit import AuditParams
from tandem.settings import Settings


@task(name="privacy-audit")
def privacy_audit(settings: Settings, params: AuditParams, command: str, track: bool,
                  link_run: str | None = None) -> dict:
    out = run_and_record(settings, tasks.resolve(settings.task), params, command, track, log=get_run_logger().info, link_run=link_run)
    return {"report": out["md"], "json": out["json"], "mlflow_run_id": out["mlflow_run_id"]}  # not the result: large
