"""Running the suites on one shared batch: one GX ephemeral context per thread (no global lock),
two passes (boolean first, details only for what failed), a verdict with a one-line reason."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import great_expectations as gx
import pyarrow.parquet as pq
from great_expectations.data_context.types.base import ProgressBarsConfig

from tandem.contract import schema
from tandem.contract.schema import POLICY_COLUMN, TASK_METADATA
from tandem.data.validation.reasons import (
    _exception_message,
    _one_line,
    _reason,
    _redact_result,
    _redact_value,
    _strip_examples,
    _trim_tracebacks,
)
from tandem.data.validation.suites import (
    CAPTURED_AT_MAX_PARAMETER,
    CLOCK_SKEW,
    FORM_SUITES,
    POLICY_REGEX,
    SUITE_NAME,
    load_suite,
    suite_path,
    transport_frame,
    write_missing,
)
from tandem.privacy.forms import FORMS
from tandem.task import Task

_log = logging.getLogger(__name__)


@dataclass
class BatchVerdict:
    ok: bool
    reason: str  # one line, human readable, safe to log (no raw identifiers)
    result: dict  # the GX validation result (redacted), or a description of why GX could not run
    rows: int
    frame: Any = field(default=None, repr=False)  # the pandas DataFrame, when ok


class _Runtime:
    def __init__(self, path: Path):
        self.path = path
        self.mtime = path.stat().st_mtime_ns
        self.suite = load_suite(path)
        # Stable ids (by position) to find a failed expectation again for the detailed second pass.
        for i, expectation in enumerate(self.suite.expectations):
            expectation.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tandem/{self.suite.name}/{i}"))
        self.by_id = {e.id: e for e in self.suite.expectations}
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self.context.data_sources.add_pandas("tandem").add_dataframe_asset("shared_batch")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_batch")

    def subset(self, ids: Sequence[str]):
        """A suite of some of the expectations, keeping their ids. Built from configurations:
        copy.copy of a bound Expectation deep-copies its whole suite (seconds)."""
        sub = gx.ExpectationSuite(name=self.suite.name, expectations=[self.by_id[i].configuration for i in ids])
        for expectation, id_ in zip(sub.expectations, ids):
            expectation.id = id_
        return sub


# One runtime per thread and suite file: GX contexts are not shared between threads, and nothing
# serializes the threads.
_local = threading.local()


def _get_runtime(task: Task, form: str | None = None, folder: Path | None = None) -> _Runtime:
    """The cached runtime of the task's suite file; rebuilt when that file changes."""
    path = suite_path(task, form, folder)
    if folder is None and not path.exists():
        write_missing(task)  # a new task's suites, generated from its definition
    runtimes = _local.__dict__.setdefault("runtimes", {})
    runtime = runtimes.get(path)
    if runtime is None or runtime.mtime != path.stat().st_mtime_ns:
        runtime = runtimes[path] = _Runtime(path)
    return runtime


def _columns_of(kwargs: dict) -> set[str]:
    return {kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)}


DETAIL_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}


def _run_suite(runtime: _Runtime, frame, params: dict, columns: tuple[str, ...]) -> dict:
    """Two passes: the whole suite as BOOLEAN_ONLY (GX's cost is per expectation and the detailed
    formats about double it), then only the failed expectations again in SUMMARY for the counts and
    examples; their detailed results replace the boolean ones. Returns the JSON dict."""
    batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    suite, skipped = runtime.suite, []
    present = set(map(str, frame.columns))
    if not set(columns) <= present:
        # Expectations on a missing column can only fail, each with a traceback (seconds for a
        # foreign file); the column-list expectation reports the missing columns instead.
        keep = [e.id for e in runtime.suite.expectations if _columns_of(e.configuration.kwargs) <= present]
        skipped = [e.id for e in runtime.suite.expectations if not _columns_of(e.configuration.kwargs) <= present]
        suite = runtime.subset(keep)
    first = batch.validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=params)
    result = first.to_json_dict()
    if skipped:
        result.setdefault("meta", {})["tandem_skipped_expectations"] = {
            "count": len(skipped), "why": "their column is missing from the batch"}
    # (the ones that raised are not rerun: their exception is their detail)
    failed = [r.expectation_config.id for r in first.results
              if not r.success and _exception_message(r.exception_info) is None]
    if failed:
        again = runtime.subset([i for i in failed if i in runtime.by_id])
        detailed = batch.validate(again, result_format=DETAIL_FORMAT, expectation_parameters=params).to_json_dict()
        by_id = {(r.get("expectation_config") or {}).get("id"): r for r in detailed["results"]}
        result["results"] = [by_id.get((r.get("expectation_config") or {}).get("id"), r) for r in result["results"]]
    return result


def _declared_forms(frame) -> list[str]:
    """The forms the batch's policy column declares that have a suite of their own."""
    forms: set[str] = set()
    if POLICY_COLUMN in frame.columns:
        for name in frame[POLICY_COLUMN].dropna().unique():
            if isinstance(name, str) and re.fullmatch(POLICY_REGEX, name):
                forms |= set(name.split("/")[0].split("+"))
    return [f for f in FORM_SUITES if f in forms]


def validate_batch(data: bytes, batch_id: str, task: Task, transport: dict | None = None,
                   suites_dir: Path | None = None) -> BatchVerdict:
    """Judge one shared batch of `task` (parquet bytes; for a sealed batch, the plaintext the server opened in
    memory, with `transport` describing the envelope: ``{"stored_format", "aead", "key_id"}``).
    Runs the shared-batch suite, and the suite of every form the batch's policy declares. Never
    raises on bad data: any problem is a failed verdict. For sealed and anonymized batches no
    example value is kept in the reason or the result."""
    sealed = bool(transport and transport.get("stored_format") not in (None, "parquet"))
    try:
        table = pq.read_table(io.BytesIO(bytes(data)))
        frame = table.to_pandas()
    except Exception as exc:  # truncated, corrupt, not parquet at all, unconvertible types
        why = _one_line(exc) if not sealed else type(exc).__name__
        return BatchVerdict(False, f"unreadable parquet: {why}",
                            {"success": False, "batch_id": batch_id, "error": "unreadable parquet", "exception": why}, 0)
    rows = len(frame)
    now = datetime.now(timezone.utc)
    params = {CAPTURED_AT_MAX_PARAMETER: (now + CLOCK_SKEW).isoformat(timespec="seconds")}
    forms = _declared_forms(frame)
    hide = sealed or any(FORMS[f].hides_values for f in forms)  # the forms that protect values keep no example
    form_results: dict[str, dict] = {}
    try:
        result = _run_suite(_get_runtime(task, None, suites_dir), frame, params, schema.of(task).columns)
        for form in forms:
            form_frame = frame if FORMS[form].row_wise else transport_frame(transport)
            form_results[form] = _run_form_suite(_get_runtime(task, form, suites_dir), form_frame)
    except Exception as exc:
        why = _one_line(exc)
        _log.warning("batch %s: validation could not run: %s", batch_id, why)
        return BatchVerdict(False, f"validation could not run: {why}",
                            {"success": False, "batch_id": batch_id, "error": "validation could not run",
                             "exception": why, "columns": [_redact_value(None, str(c)) for c in frame.columns]}, rows)
    result = json.loads(json.dumps(result, default=str))
    form_results = json.loads(json.dumps(form_results, default=str))
    if hide:
        _strip_examples(result)
        for r in form_results.values():
            _strip_examples(r)
    recorded = (table.schema.metadata or {}).get(b"tandem.policy")
    metadata_problem = None
    if recorded is not None and POLICY_COLUMN in frame.columns:
        try:
            recorded_name = json.loads(recorded).get("name")
        except ValueError:
            recorded_name = None
        if set(frame[POLICY_COLUMN].dropna().unique()) - {recorded_name}:
            metadata_problem = "policy: the batch's recorded policy (parquet metadata) does not match its policy column"
    task_problem = task_mismatch(table.schema.metadata, task)
    if task_problem:
        metadata_problem = f"{metadata_problem}; {task_problem}" if metadata_problem else task_problem
    ok = bool(result.get("success")) and all(r.get("success") for r in form_results.values()) and metadata_problem is None
    statistics = result.get("statistics") or {}
    evaluated = (statistics.get("evaluated_expectations") or 0) + sum(
        (r.get("statistics") or {}).get("evaluated_expectations") or 0 for r in form_results.values())
    if ok:
        suites = "+".join([SUITE_NAME, *forms])
        reason = f"ok: {rows} rows passed {evaluated} expectations" + (f" ({suites})" if forms else "")
    else:
        parts = [] if result.get("success") else [_reason(result)]
        parts += [f"{form} form: {_reason(r)}" for form, r in form_results.items() if not r.get("success")]
        parts += [metadata_problem] if metadata_problem else []
        reason = "; ".join(parts)  # from the raw result: every example in it goes through _example()
    result = _redact_result(result)
    _trim_tracebacks(result)
    result.setdefault("meta", {})["tandem_batch_id"] = batch_id
    if form_results:
        for r in form_results.values():
            _redact_result(r)
            _trim_tracebacks(r)
        result["meta"]["tandem_form_results"] = form_results
        result["meta"]["tandem_forms"] = forms
        result["success"] = ok
        if isinstance(result.get("statistics"), dict):
            result["statistics"]["evaluated_expectations_all_suites"] = evaluated
    if metadata_problem:
        result["success"] = False
        result["meta"]["tandem_policy_metadata"] = metadata_problem
    if ok:
        return BatchVerdict(True, reason, result, rows, frame)
    return BatchVerdict(False, reason, result, rows)


def task_mismatch(metadata: dict | None, task: Task) -> str | None:
    """Why a batch's recorded task (parquet metadata) is not `task`, the one this server serves, or None."""
    recorded = (metadata or {}).get(TASK_METADATA)
    if recorded is None:
        return f"task: the batch declares no task (parquet metadata {TASK_METADATA.decode()}); this server serves {task.tag}"
    if recorded != task.tag.encode():
        made = recorded.decode(errors="replace")[:80]
        return f"task: made under {made}, this server serves {task.tag}"
    return None


def _run_form_suite(runtime: _Runtime, frame) -> dict:
    """A form's suite, in one pass with counts (these suites are short)."""
    batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(runtime.suite, result_format=DETAIL_FORMAT).to_json_dict()
