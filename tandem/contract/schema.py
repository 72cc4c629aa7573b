"""The shared-batch format: what a device uploads to ``incoming/`` and what the server keeps,
derived from a task (`of(task)`; nothing here reads which task is served).

One parquet file per batch; one row per example, already featurized on the device (raw inputs never
leave it) and already in the sharing policy's modified form. The schema's metadata carries the
task's tag (name, version, digest): a batch made under another task or version is quarantined.
"""

from __future__ import annotations

import pyarrow as pa

from tandem.contract import features
from tandem.task import Task, once_per_task

TASK_METADATA = b"tandem.task"
POLICY_COLUMN = "policy"
LABEL_COLUMN = "label"


class BatchFormat:
    """A task's shared-batch schema and the names derived from it. Build it with `of(task)`."""

    def __init__(self, task: Task):
        featurization = features.of(task)
        self.tag = task.tag
        self.name = task.name
        self.kind = featurization.kind
        self.feature_names: tuple[str, ...] = tuple(featurization.feature_names)
        self.device_columns: tuple[str, ...] = tuple(task.quasi_identifiers)  # device metadata: the quasi-identifiers
        self.schema = pa.schema(
            [
                pa.field("pseudonym", pa.string(), nullable=False),  # 64 lowercase hex: HMAC-SHA256 of the user id
                pa.field("key_id", pa.string(), nullable=False),  # which pseudonymization key version
                pa.field("window_id", pa.string(), nullable=False),  # 32 lowercase hex, stable per window
                pa.field("captured_at", pa.timestamp("ms", tz="UTC"), nullable=False),
                *[pa.field(name, pa.float64(), nullable=False) for name in self.feature_names],
                # one of the task's classes, or the numeric target
                pa.field(LABEL_COLUMN, pa.type_for_alias(self.kind.label_arrow), nullable=False),
                *[pa.field(name, pa.string(), nullable=False) for name in self.device_columns],
                pa.field(POLICY_COLUMN, pa.string(), nullable=False),  # e.g. "pseudonymized/v1"
            ],
            metadata={TASK_METADATA: task.tag.encode()},
        )
        self.columns: tuple[str, ...] = tuple(self.schema.names)


@once_per_task
def of(task: Task) -> BatchFormat:
    """The task's batch format."""
    return BatchFormat(task)
