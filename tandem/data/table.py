"""The accepted rows as one versioned table (Delta Lake, via delta-rs) inside the store, at
``table/accepted/``: on the local folder and on S3 alike.

Why Delta: every append is one atomic commit (readers see a whole version or the one before), a
dataset snapshot is simply a table version (time travel), and concurrent writers need no lock
(optimistic commits; on S3 through conditional puts).

Exactly once: each append carries one Delta *application transaction* per batch (app id
``tandem.batch/<batch id>``). Before appending, a writer drops the batches whose transaction is already
in the table (a run that crashed after its commit but before its ledger write); two writers that
commit the same batch at once conflict in Delta's commit check (``Concurrent transaction``), and the
loser reloads and drops what the winner committed. So a batch's rows enter the table once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from tandem.contract import schema
from tandem.data.store import LocalStore, S3Store, Store, put_json, sha256_hex
from tandem.data.store_keys import POLICIES, TABLE
from tandem.privacy.policy import policy_from_metadata
from tandem.task import Task

BATCH_ID = "batch_id"  # the column that says which batch a row came from
APP_PREFIX = "tandem.batch/"


def table_schema(task: Task) -> pa.Schema:
    """The task's batch schema plus the batch id (no metadata: the table holds one task's rows)."""
    return pa.schema([*schema.of(task).schema, pa.field(BATCH_ID, pa.string(), nullable=False)])


# No column statistics for text columns: the Delta log keeps each file's min/max as plain JSON, and a
# pseudonym, a key id or a device model there would outlive an erasure of the rows themselves.
# Numbers and times keep theirs (the per-day limits skip files by captured_at).
def _text_columns(columns: pa.Schema) -> list[str]:
    return [f.name for f in columns if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _writer(columns: pa.Schema) -> WriterProperties:
    return WriterProperties(compression="ZSTD", column_properties={
        name: ColumnProperties(statistics_enabled="NONE") for name in _text_columns(columns)})


def _stats_columns(columns: pa.Schema) -> str:
    return ",".join(f.name for f in columns if f.name not in _text_columns(columns))


def app_id(batch_id: str) -> str:
    return APP_PREFIX + batch_id


@dataclass(frozen=True)
class TableLocation:
    uri: str
    storage_options: dict | None


def locate(store: Store) -> TableLocation:
    """Where the table of `store` lives, and how delta-rs reaches it (the store's own S3 endpoint and
    credentials; ``conditional_put=etag`` makes commits create-only on S3 without a lock service)."""
    if isinstance(store, LocalStore):
        return TableLocation(str(store.root / TABLE), None)
    if isinstance(store, S3Store):
        prefix = f"{store.prefix}/{TABLE}" if store.prefix else TABLE
        timeout = store.client.meta.config.read_timeout  # the store's bound on a hanging endpoint, for delta-rs too
        options = {"conditional_put": "etag", "AWS_REGION": store.client.meta.region_name or "us-east-1",
                   "timeout": f"{timeout:g}s", "connect_timeout": "5s", "max_retries": "1",
                   "retry_timeout": f"{2 * timeout:g}s"}
        endpoint = store.client.meta.endpoint_url
        if endpoint and not endpoint.startswith("https://s3."):
            options["AWS_ENDPOINT_URL"] = endpoint
            options["AWS_ALLOW_HTTP"] = "true" if endpoint.startswith("http://") else "false"
        credentials = boto3.Session().get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(AWS_ACCESS_KEY_ID=frozen.access_key, AWS_SECRET_ACCESS_KEY=frozen.secret_key)
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
        return TableLocation(f"s3://{store.bucket}/{prefix}", options)
    raise TypeError(f"no table location for a {type(store).__name__}")


def open_table(store: Store, version: int | None = None) -> DeltaTable | None:
    """The table (at `version`, else the latest), or None before the first append."""
    return _open(locate(store), version)


def committed(table: DeltaTable | None, batch_ids) -> set[str]:
    """The batches whose rows are already in `table` (their transaction is in its log)."""
    if table is None:
        return set()
    return {b for b in batch_ids if table.transaction_version(app_id(b)) is not None}


class AppendConflict(RuntimeError):
    """Delta kept refusing the commit; the caller's batches stay unledgered and the next run retries."""


def append(store: Store, rows: pa.Table, batch_ids: list[str], run_id: str | None = None,
           attempts: int = 8) -> tuple[int | None, set[str]]:
    """Append the rows of `batch_ids` (column ``batch_id`` says which row is whose) in one commit,
    leaving out batches already in the table. Returns (the version holding them, or the current one
    when all were in already; the batch ids this call committed)."""
    where = locate(store)
    todo = list(dict.fromkeys(batch_ids))
    columns = pa.schema([f.with_nullable(False) for f in rows.schema])  # every column of the table is required
    for attempt in range(attempts):
        table = open_table(store)
        if table is None:  # create it empty first: an append must read a version to see rivals' transactions
            _create(where, columns)
            continue
        done = committed(table, todo)
        todo = [b for b in todo if b not in done]
        if not todo:
            return table.version(), set()
        part = rows.filter(pc.is_in(rows[BATCH_ID], value_set=pa.array(todo, pa.string())))
        properties = CommitProperties(
            app_transactions=[Transaction(app_id(b), 1, int(time.time() * 1000)) for b in todo],
            custom_metadata={"tandem.batches": str(len(todo)), "tandem.run_id": str(run_id or "")},
            max_commit_retries=20)
        try:
            write_deltalake(table, part.cast(columns), mode="append", storage_options=where.storage_options,
                            commit_properties=properties, writer_properties=_writer(columns))
        except CommitFailedError:
            time.sleep(0.05 * (attempt + 1))  # another writer committed some of the same batches: look again
            continue
        return open_table(store).version(), set(todo)
    raise AppendConflict(f"table append still conflicting after {attempts} attempts ({len(todo)} batches)")


def _create(where: TableLocation, columns: pa.Schema) -> None:
    """The empty table, unless it exists; a rival creating it at the same moment wins harmlessly."""
    try:
        DeltaTable.create(where.uri, columns, mode="ignore", name="tandem accepted rows",
                          configuration={"delta.dataSkippingStatsColumns": _stats_columns(columns)},
                          storage_options=where.storage_options)
    except Exception:  # delta-rs raises a generic error when version 0 appeared meanwhile
        if _open(where) is None:
            raise


def _open(where: TableLocation, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(where.uri, version=version, storage_options=where.storage_options)
    except TableNotFoundError:
        return None


def batch_rows(batch_id: str, table: pa.Table, task: Task) -> pa.Table:
    """A batch's rows as the table holds them: the task's batch schema plus the batch id."""
    batch_schema = schema.of(task).schema.remove_metadata()
    table = table.select(list(batch_schema.names)).replace_schema_metadata(None)
    try:
        table = table.cast(batch_schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = table.cast(batch_schema, safe=False)  # a type GX accepts (e.g. us timestamps) that the schema narrows
    return table.append_column(BATCH_ID, pa.array([batch_id] * table.num_rows, pa.string()))


def record_policies(store: Store, tables: list[pa.Table], task: Task) -> None:
    """Keep the public JSON of each policy the batches recorded (a handful ever), for the snapshot's
    manifest and its k: the table's rows carry only the policy's name."""
    seen = set()
    for t in tables:
        raw = (t.schema.metadata or {}).get(b"tandem.policy")
        if raw and raw not in seen:
            seen.add(raw)
            policy = policy_from_metadata(t.schema.metadata)
            slug = "".join(c if c.isalnum() else "_" for c in policy.name)
            put_json(store, f"{POLICIES}{slug}-{sha256_hex(raw)[:12]}.json", policy.public_dict(task), if_absent=True)


def commit(store: Store, batches: dict[str, pa.Table], task: Task, run_id: str | None = None) -> int:
    """Accepted batches of `task` (id -> their validated rows) into the table in one commit, each once;
    returns the table version that holds them."""
    record_policies(store, list(batches.values()), task)
    return append(store, _all_rows(batches, task), list(batches), run_id)[0]


def _all_rows(batches: dict[str, pa.Table], task: Task) -> pa.Table:
    """`batch_rows` of every batch, cast once when they share the schema's types (the bulk path's
    always do); batch by batch otherwise."""
    batch_schema = schema.of(task).schema.remove_metadata()
    plain = [t.select(list(batch_schema.names)).replace_schema_metadata(None) for t in batches.values()]
    try:
        rows = pa.concat_tables(plain, promote_options="default").combine_chunks().cast(batch_schema)  # not a chunk per batch
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.concat_tables([batch_rows(b, t, task) for b, t in batches.items()])
    ids = np.repeat(np.array(list(batches), dtype=object), [t.num_rows for t in plain])
    return rows.append_column(BATCH_ID, pa.array(ids, pa.string()))


def erase_batches(store: Store, batch_ids: list[str]) -> dict:
    """Rewrite the table without the rows of `batch_ids`, then vacuum every file no longer in the
    latest version, so no older version can bring the rows back. The delete's predicate (kept in
    the Delta log) names batch ids only, never a pseudonym. Returns the numbers."""
    table = open_table(store)
    if table is None or not batch_ids:
        return {"rows_deleted": 0, "files_vacuumed": 0, "table_version": None if table is None else table.version()}
    ids = sorted(set(batch_ids))
    if any(not _SAFE_ID.fullmatch(b) for b in ids):
        raise ValueError("batch ids must be lowercase hex")
    predicate = f"{BATCH_ID} IN ({', '.join(repr(b) for b in ids)})"
    metrics = table.delete(predicate, writer_properties=_writer(pa.schema(table.schema().to_arrow())))
    table = open_table(store)
    removed = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    _drop_old_log(store)
    table = open_table(store)
    return {"rows_deleted": int(metrics.get("num_deleted_rows", 0)), "files_vacuumed": len(removed),
            "table_version": table.version()}


def _drop_old_log(store: Store) -> None:
    """Checkpoint, then delete the log entries before it: a table written before text statistics were
    turned off holds a pseudonym as a file's min/max there. The log retention is set to zero only for
    this cleanup and back to Delta's 30 days after (snapshots read recent versions by number)."""
    table = open_table(store)
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    table = open_table(store)
    table.create_checkpoint()
    table.cleanup_metadata()
    open_table(store).alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})


_SAFE_ID = re.compile(r"[0-9a-zA-Z_-]{1,64}")


def table_version(store: Store) -> int | None:
    table = open_table(store)
    return None if table is None else table.version()
