"""Wire format v1 (docs/wire-format.md): a batch as a phone writes it with Foundation alone (JSON,
gzip), and its exact translation to and from a task's shared-batch parquet table (`schema.of(task)`).

Both sides use this module: the gateway decodes (`decode`), the fleet simulator's `--via` path and
the tests encode (`encode`). Floats travel as JSON numbers in their shortest round-trip form (Python's
`repr`, Swift's `JSONEncoder`), so every feature arrives bit for bit.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from itertools import chain

import numpy as np
import orjson
import pyarrow as pa

from tandem.contract import schema
from tandem.contract.schema import LABEL_COLUMN, POLICY_COLUMN, TASK_METADATA
from tandem.task import Task

FORMAT = "tandem.batch/v1"
CONTENT_TYPE = "application/vnd.tandem.batch+json"
SEALED_CONTENT_TYPE = "application/vnd.tandem.sealed-batch"
SEALED_PLAINTEXT = "application/vnd.tandem.batch+json+gzip"  # the sealed container's `content`
HEADER_COLUMNS = ("pseudonym", "key_id", POLICY_COLUMN)  # one value per batch, carried in the header
NON_FINITE = {"NaN", "Infinity", "-Infinity"}  # Swift's convertToString spellings, recognized only to refuse them
HEX64, HEX32 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{32}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class WireError(ValueError):
    """A batch that is not valid wire format v1; the message is one line, safe to return and log."""


class TooLarge(WireError):
    """Inflates past the limit or holds too many rows."""


@dataclass
class WireBatch:
    header: dict
    table: pa.Table  # the task's batch schema, task metadata only (the policy's metadata is the caller's: it parses policies)


def columns(task: Task) -> tuple[str, ...]:
    """The task's wire columns: its batch columns less the ones the header carries."""
    return tuple(n for n in schema.of(task).columns if n not in HEADER_COLUMNS)


def column_types(task: Task) -> dict[str, str]:
    """What `GET /v1/task` tells an app: each wire column and its JSON type."""
    batch = schema.of(task)
    kinds = {"window_id": "string", "captured_at": "timestamp-ms", LABEL_COLUMN: batch.kind.label_json}
    features = frozenset(batch.feature_names)
    return {n: kinds.get(n, "number" if n in features else "string") for n in columns(task)}


# --- encode (the device's side) ---------------------------------------------------------------------

def encode(table: pa.Table, client_batch_id: str, created_at: str, policy: dict) -> bytes:
    """The batch JSON (not yet gzipped) of a shared-batch table: what a phone would write. The task is
    the one the table was made under (its schema's metadata); its columns are the table's."""
    n = table.num_rows
    first = {c: table.column(c)[0].as_py() for c in ("pseudonym", "key_id")}
    out = {}
    for name in (c for c in table.column_names if c not in HEADER_COLUMNS):
        col = table.column(name)
        if name == "captured_at":
            out[name] = col.cast(pa.int64()).to_numpy().tolist()
        elif pa.types.is_floating(col.type):
            values = col.to_numpy()
            if not np.isfinite(values).all():  # orjson would write null: refuse here, as a phone's JSONEncoder does
                raise WireError(f"column {name} holds NaN or infinity")
            out[name] = values.tolist()
        else:
            out[name] = col.to_pylist()
    tag = (table.schema.metadata or {}).get(TASK_METADATA, b"").decode()
    header = {"task": tag, "policy": policy, **first, "client_batch_id": client_batch_id,
              "created_at": created_at, "row_count": n}
    # orjson writes a double's shortest round-trip form, as Python's repr and Swift's JSONEncoder do (checked
    # bit for bit both ways on 200k doubles, subnormals included), 60x faster than json for 10k floats
    return orjson.dumps({"format": FORMAT, "header": header, "columns": out})


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)  # level 1: 4x faster than 6, the body only 1.2x larger (floats)


# --- decode (the gateway's side) --------------------------------------------------------------------

def inflate(body: bytes, max_bytes: int) -> bytes:
    """gunzip `body`, refusing a truncated or malformed stream, trailing bytes, and more than `max_bytes`."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error:
        raise WireError("body is not valid gzip") from None
    if len(out) > max_bytes:
        raise TooLarge(f"body inflates to more than {max_bytes} bytes")
    if not d.eof:
        raise WireError("gzip body is truncated")
    if d.unused_data:
        raise WireError("bytes after the end of the gzip stream")
    return out


def _no_constants(name: str):
    raise WireError(f"bare {name} is not JSON (non-finite values are refused)")


def parse_json(raw: bytes) -> dict:
    try:
        doc = orjson.loads(raw)  # the fast path (correctly rounded floats); on any refusal the json module says why
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(raw, parse_constant=_no_constants)  # e.g. 1e999 reads as inf: refused by the finite check
        except WireError:
            raise
        except (ValueError, RecursionError):
            raise WireError("body is not valid JSON (malformed or truncated)") from None
    if not isinstance(doc, dict):
        raise WireError("body must be a JSON object with format, header and columns")
    return doc


def check_header(doc: dict, max_rows: int, task: Task) -> dict:
    if doc.get("format") != FORMAT:
        raise WireError(f"format must be {FORMAT!r}")
    header = doc.get("header")
    if not isinstance(header, dict):
        raise WireError("header must be an object")
    missing = [k for k in ("task", "policy", "pseudonym", "key_id", "client_batch_id", "created_at", "row_count")
               if k not in header]
    if missing:
        raise WireError(f"header lacks {', '.join(missing)}")
    if header["task"] != task.tag:
        raise WireError(f"batch made under task {str(header['task'])[:80]!r}, this gateway serves {task.tag!r}")
    if not isinstance(header["policy"], dict) or not isinstance(header["policy"].get("name"), str):
        raise WireError("header.policy must be the policy's public JSON object (with its name)")
    if not isinstance(header["pseudonym"], str) or not HEX64.fullmatch(header["pseudonym"]):
        raise WireError("header.pseudonym must be 64 lowercase hex")
    if not isinstance(header["key_id"], str) or not KEY_ID.fullmatch(header["key_id"]):
        raise WireError("header.key_id must be 1-32 of [A-Za-z0-9_.-]")
    if not isinstance(header["client_batch_id"], str) or not CLIENT_ID.fullmatch(header["client_batch_id"]):
        raise WireError("header.client_batch_id must be 1-64 of [A-Za-z0-9_.-]")
    if not isinstance(header["created_at"], str) or len(header["created_at"]) > 64:
        raise WireError("header.created_at must be an ISO 8601 date-time string")
    rows = header["row_count"]
    if type(rows) is not int or rows < 1:
        raise WireError("header.row_count must be a positive integer")
    if rows > max_rows:
        raise TooLarge(f"{rows} rows, the limit is {max_rows} per batch")
    return header


def _numbers(name: str, values: list, task_name: str) -> np.ndarray:
    if not set(map(type, values)) <= {float, int}:  # bool is not int here: true/false are refused
        if any(isinstance(v, str) and v in NON_FINITE for v in values):
            raise WireError(f"column {name} holds NaN or infinity, which task {task_name} forbids")
        raise WireError(f"column {name} must hold only numbers")
    arr = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
    if not np.isfinite(arr).all():  # e.g. 1e999 parses as inf
        raise WireError(f"column {name} holds NaN or infinity, which task {task_name} forbids")
    return arr


def _feature_matrix(columns: dict, feature_names, task_name: str) -> np.ndarray:
    """All features as one (features, rows) float64 array: one type check and one conversion for the
    whole batch; only a bad batch pays for finding the column to name."""
    feats = [columns[name] for name in feature_names]
    if set(map(type, chain.from_iterable(feats))) <= {float, int}:
        matrix = np.array(feats, dtype=np.float64)
        if np.isfinite(matrix).all():
            return matrix
    for name in feature_names:
        _numbers(name, columns[name], task_name)
    raise WireError("features hold a value that is not a finite number")  # not reached: _numbers names it


def _strings(name: str, values: list, pattern: re.Pattern | None = None) -> list:
    if not set(map(type, values)) <= {str} or max(map(len, values), default=0) > 256:
        raise WireError(f"column {name} must hold only strings (at most 256 characters)")
    if pattern is not None and not all(pattern.fullmatch(v) for v in values):
        raise WireError(f"column {name} must hold {pattern.pattern} strings")
    return values


# the label column's reader, by its JSON type (the task's kind says which)
_LABEL_READERS = {"string": lambda name, values, task_name: _strings(name, values), "number": _numbers}


def decode(body: bytes, max_inflated: int, max_rows: int, task: Task) -> WireBatch:
    """A gzip'd wire batch of `task` -> its header and the shared-batch table. Raises WireError / TooLarge."""
    doc = parse_json(inflate(body, max_inflated))
    return from_document(doc, max_rows, task)


def from_document(doc: dict, max_rows: int, task: Task) -> WireBatch:
    header = check_header(doc, max_rows, task)
    batch = schema.of(task)
    wire_columns = columns(task)
    n = header["row_count"]
    given = doc.get("columns")
    if not isinstance(given, dict):
        raise WireError("columns must be an object of arrays")
    unknown = sorted(set(given) - set(wire_columns))
    if unknown:
        raise WireError(f"unknown column(s) {', '.join(c[:40] for c in unknown[:3])}")
    missing = [c for c in wire_columns if c not in given]
    if missing:
        raise WireError(f"missing column(s) {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    for name in wire_columns:
        values = given[name]
        if not isinstance(values, list):
            raise WireError(f"column {name} must be an array")
        if len(values) != n:
            raise WireError(f"header.row_count says {n} rows, column {name} holds {len(values)}")
    data: dict[str, object] = {"pseudonym": [header["pseudonym"]] * n, "key_id": [header["key_id"]] * n,
                               POLICY_COLUMN: [header["policy"]["name"]] * n}
    data["window_id"] = _strings("window_id", given["window_id"], HEX32)
    stamps = given["captured_at"]
    if not all(type(v) is int and 0 <= v < 2**53 for v in stamps):
        raise WireError("column captured_at must hold integer milliseconds since the Unix epoch")
    data["captured_at"] = pa.array(stamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    matrix = _feature_matrix(given, batch.feature_names, task.name)
    for j, name in enumerate(batch.feature_names):
        data[name] = matrix[j]
    data[LABEL_COLUMN] = _LABEL_READERS[batch.kind.label_json](LABEL_COLUMN, given[LABEL_COLUMN], task.name)
    for name in batch.device_columns:
        data[name] = _strings(name, given[name])
    table = pa.Table.from_pydict({k: data[k] for k in batch.columns}, schema=batch.schema)
    return WireBatch(header, table)

