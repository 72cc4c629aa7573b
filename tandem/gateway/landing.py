"""A decoded wire batch -> the exact object the simulator would have uploaded: the same parquet bytes
(`tandem.fleet.sharing.table_bytes`), the same policy metadata, the same key
(``incoming/dt=<day>/<pseudonym[:16]>/<batch id>.parquet``, batch id from pseudonym and window ids).
Converting here keeps the ingest unchanged: it cannot tell which door a batch came through."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from tandem.contract import schema
from tandem.contract.wire import WireBatch, WireError
from tandem.data.landing import upload_key
from tandem.fleet.sharing import table_bytes
from tandem.privacy import sealing
from tandem.privacy.policy import METADATA_KEY, SharingPolicy, load_policy
from tandem.task import Task


def policy_of(header: dict) -> SharingPolicy:
    try:
        return load_policy(header["policy"])
    except (ValueError, TypeError) as e:
        raise WireError(f"header.policy is not a Tandem sharing policy ({str(e).splitlines()[0][:120]})") from None


def batch_id(table: pa.Table) -> str:
    """The simulator's batch id: the same windows of the same pseudonym are the same batch."""
    pseudonym = table.column("pseudonym")[0].as_py()
    ids = "|".join(table.column("window_id").to_pylist())
    return hashlib.sha256(f"{pseudonym}|{ids}".encode()).hexdigest()[:24]


def landed_object(batch: WireBatch, policy: SharingPolicy, seal_with: tuple[str, bytes] | None, task: Task,
                  day: str | None = None) -> tuple[str, bytes]:
    """(store key, bytes) of the batch of `task` as it lands: parquet, or parquet sealed again under `seal_with`."""
    if policy.name != batch.header["policy"]["name"]:
        raise WireError(f"header.policy names {batch.header['policy']['name'][:60]!r} but its fields make {policy.name!r}")
    metadata = {**schema.of(task).schema.metadata, METADATA_KEY: policy.public_json(task).encode()}
    table = batch.table.replace_schema_metadata(metadata)
    data = table_bytes(table)
    pseudonym = batch.header["pseudonym"]
    if seal_with is not None:
        key_id, key = seal_with
        return upload_key(pseudonym[:16], batch_id(table), sealing.SEALED_SUFFIX, day), sealing.seal(data, key, key_id)
    return upload_key(pseudonym[:16], batch_id(table), ".parquet", day), data
