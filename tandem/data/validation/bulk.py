"""Validating many batches in one columnar pass.

1. Per file, with pyarrow only (cheap): readable, the schema's names and types in order, at least one
   row, a policy name the suites know, the recorded policy (parquet metadata) equal to the column,
   and a form whose suite runs on rows (anonymized, dp). A batch that fails any of these, or is sealed
   or declares ``encrypted``, is not bulk material: it goes to the per-batch judge as before.
2. One GX validation of the shared-batch suite over the rows of all the others at once, with a
   ``__batch`` column; then each form's suite over the rows of the batches declaring it. Table-level
   expectations are what step 1 checked; the per-batch uniqueness of ``window_id`` becomes uniqueness
   of (``__batch``, ``window_id``); not-null and range expectations are validated on each batch's
   minimum and maximum (`batch_stats`: exact for them, and about 70 % of the GX time on rows). Every other
   expectation is row-wise, so a batch passes the bulk pass exactly when it would pass alone.
3. Only when something failed: the failed expectations again in COMPLETE format, whose
   ``unexpected_index_list`` names the rows, and so the batches, that failed.

The caller re-judges just the failing batches one by one (`validate_batch`) for their exact
reason and GX result; the good batches of the chunk are not held back.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from great_expectations.data_context.types.base import ProgressBarsConfig

from tandem.contract import schema
from tandem.contract.schema import POLICY_COLUMN, TASK_METADATA
from tandem.data.validation.batch_stats import judged_on_statistics, min_max_frame
from tandem.data.validation.suites import (
    CAPTURED_AT_MAX_PARAMETER,
    CLOCK_SKEW,
    POLICY_REGEX,
    SUITE_NAME,
    load_suite,
    suite_path,
    write_missing,
)
from tandem.privacy.forms import FORMS
from tandem.task import Task

BATCH = "__batch"
ROW_FORMS = tuple(n for n, f in FORMS.items() if f.suite and f.row_wise)  # ("anonymized", "dp"); "encrypted" looks at the envelope
_TABLE_LEVEL = {"expect_table_columns_to_match_ordered_list", "expect_table_row_count_to_be_between",
                "expect_column_values_to_be_of_type"}  # step 1 checks these exactly, per file


@dataclass
class Candidate:
    """One batch for the bulk pass: its rows, and what the ledger entry will need if it passes."""

    batch_id: str
    table: pa.Table
    forms: tuple[str, ...]


def structural(parquet: pq.ParquetFile, batch_id: str, task: Task) -> Candidate | None:
    """The batch of `task` (an opened parquet file) read with pyarrow, when it is bulk material (see
    step 1); None sends it to the per-batch judge."""
    expected = schema.of(task).schema
    try:
        table = parquet.read(use_threads=False)  # callers read many files in threads: one thread a file decodes faster
    except Exception:
        return None
    if table.schema.names != expected.names or table.schema.types != expected.types or table.num_rows < 1:
        return None
    names = pc.unique(table.column(POLICY_COLUMN)).to_pylist()
    if len(names) != 1 or not isinstance(names[0], str) or not re.fullmatch(POLICY_REGEX, names[0]):
        return None
    forms = tuple(f for f in names[0].split("/")[0].split("+") if f != "pseudonymized")
    if any(f not in ROW_FORMS for f in forms):
        return None
    if (table.schema.metadata or {}).get(TASK_METADATA) != task.tag.encode():
        return None  # the per-batch judge quarantines it with the task it was made under
    recorded = (table.schema.metadata or {}).get(b"tandem.policy")
    if recorded is not None:
        try:
            if json.loads(recorded).get("name") != names[0]:
                return None
        except (ValueError, AttributeError):
            return None
    return Candidate(batch_id, table, tuple(f for f in ROW_FORMS if f in forms))


_COLUMN_KWARGS = ("column", "column_A", "column_B")


class _BulkSuite:
    """Expectations validated together on one frame, each with a stable id to find it again by."""

    def __init__(self, name: str, configs: list, batch_definition):
        self.suite = gx.ExpectationSuite(name=name, expectations=configs)
        for i, expectation in enumerate(self.suite.expectations):
            expectation.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tandem/{name}/{i}"))
        self.by_id = {e.id: e.configuration for e in self.suite.expectations}
        self.batch_definition = batch_definition
        self.columns = sorted({c for config in configs for c in _columns(config)} - {BATCH})


def _columns(config) -> list[str]:
    return [config.kwargs[k] for k in _COLUMN_KWARGS if k in config.kwargs] + list(config.kwargs.get("column_list", []))


class _BulkRuntime:
    """The bulk version of a suite file: its row-wise part and its part judged on per-batch
    statistics, with their own GX context (one per thread, like the runner's)."""

    def __init__(self, path: Path, form: str | None, batch_schema: pa.Schema):
        self.mtime = path.stat().st_mtime_ns
        suite = load_suite(path)
        self.count = len(suite.expectations)  # what the per-batch reason reports as evaluated
        on_rows, on_stats = [], []
        for e in suite.expectations:
            config = e.configuration
            if config.type in _TABLE_LEVEL:
                continue
            if config.type == "expect_column_values_to_be_unique":
                on_rows.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=[BATCH, config.kwargs["column"]]).configuration)
            elif judged_on_statistics(config, batch_schema):
                on_stats.append(config)
            else:
                on_rows.append(config)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self.context.data_sources.add_pandas("tandem-bulk").add_dataframe_asset("batches")
        definition = asset.add_batch_definition_whole_dataframe("rows")
        self.rows = _BulkSuite(f"{suite.name}.bulk.rows.{form}", on_rows, definition) if on_rows else None
        self.stats = _BulkSuite(f"{suite.name}.bulk.stats.{form}", on_stats, definition) if on_stats else None


_local = threading.local()


def _runtime(task: Task, form: str | None, folder: Path | None) -> _BulkRuntime:
    path = suite_path(task, form, folder)
    if folder is None and not path.exists():
        write_missing(task)  # a new task's suites, generated from its definition
    cache = _local.__dict__.setdefault("runtimes", {})
    key = (task.tag, path)  # a suite folder given for one task says nothing of another's
    runtime = cache.get(key)
    if runtime is None or runtime.mtime != path.stat().st_mtime_ns:
        runtime = cache[key] = _BulkRuntime(path, form, schema.of(task).schema)
    return runtime


def _failing_rows(part: _BulkSuite, frame, params: dict) -> np.ndarray | None:
    """Row positions that failed any expectation (empty: all passed); None when GX cannot say which
    (an expectation raised), so every batch in the frame must be judged alone."""
    batch = part.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    first = batch.validate(part.suite, result_format="BOOLEAN_ONLY", expectation_parameters=params)
    failed = [r.expectation_config.id for r in first.results if not r.success]
    if not failed:
        return np.empty(0, dtype=np.int64)
    again = gx.ExpectationSuite(name=part.suite.name, expectations=[part.by_id[i] for i in failed])
    detailed = batch.validate(again, result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
                              expectation_parameters=params)
    rows: list[int] = []
    for r in detailed.results:
        if r.success:
            continue
        index = (r.result or {}).get("unexpected_index_list")
        if index is None or (r.exception_info or {}).get("raised_exception"):
            return None
        rows += [int(i) for i in index]
    return np.unique(np.asarray(rows, dtype=np.int64))


def _failing_batches(runtime: _BulkRuntime, table: pa.Table, owner: np.ndarray, params: dict) -> set[int]:
    """The batches (indices in `owner`) that fail the suite: its row-wise part on their rows, its
    statistics part on their minima and maxima."""
    bad: set[int] = set()
    everyone = set(np.unique(owner).tolist())  # when GX cannot say which batches failed
    if runtime.rows is not None:
        # only the columns its expectations name (one a team named wrongly: GX says so, see _failing_rows)
        named = [c for c in runtime.rows.columns if c in table.column_names]
        frame = table.select(named or table.column_names).to_pandas()
        frame[BATCH] = owner
        failing = _failing_rows(runtime.rows, frame, params)
        bad |= everyone if failing is None else set(owner[failing].tolist())
    if runtime.stats is not None:
        frame, stats_owner = min_max_frame(table, owner, runtime.stats.columns)
        failing = _failing_rows(runtime.stats, frame, params)
        bad |= everyone if failing is None else set(stats_owner[failing].tolist())
    return bad


@dataclass
class BulkOutcome:
    passed: dict[str, str]  # batch id -> the same "ok: ..." reason the per-batch judge gives
    failed: list[str]  # batch ids to judge alone


def validate_many(candidates: list[Candidate], task: Task, suites_dir: Path | None = None,
                  now: datetime | None = None) -> BulkOutcome:
    """The bulk pass over structurally sound batches of `task` (see the module's steps 2 and 3)."""
    if not candidates:
        return BulkOutcome({}, [])
    now = now or datetime.now(timezone.utc)
    params = {CAPTURED_AT_MAX_PARAMETER: (now + CLOCK_SKEW).isoformat(timespec="seconds")}
    rows = np.array([c.table.num_rows for c in candidates])
    owner = np.repeat(np.arange(len(candidates)), rows)
    # structural() checked the types: the files differ only in nullability and metadata, so one cast
    nullable = pa.schema([f.with_nullable(True) for f in schema.of(task).schema])  # files differ only in that; nulls are GX's to find
    table = pa.concat_tables([c.table for c in candidates], promote_options="default").combine_chunks().cast(nullable)
    main = _runtime(task, None, suites_dir)
    bad = _failing_batches(main, table, owner, params)
    counts = {None: main.count}
    for form in ROW_FORMS:
        members = [i for i, c in enumerate(candidates) if form in c.forms and i not in bad]
        if not members:
            continue
        runtime = _runtime(task, form, suites_dir)
        counts[form] = runtime.count
        mask = np.isin(owner, members)
        bad |= _failing_batches(runtime, table.filter(pa.array(mask)), owner[mask], params)
    passed = {}
    for i, c in enumerate(candidates):
        if i in bad:
            continue
        evaluated = counts[None] + sum(counts[f] for f in c.forms)
        suites = f" ({'+'.join([SUITE_NAME, *c.forms])})" if c.forms else ""
        passed[c.batch_id] = f"ok: {c.table.num_rows} rows passed {evaluated} expectations{suites}"
    return BulkOutcome(passed, [candidates[i].batch_id for i in sorted(bad)])
