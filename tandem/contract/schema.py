"""The shared-batch format: what a device uploads to ``incoming/`` and what the server keeps,
derived from the active task.

One parquet file per batch; one row per example, already featurized on the device (raw inputs never
leave it) and already in the sharing policy's modified form. The schema's metadata carries the
task's tag (name, version, digest): a batch made under another task or version is quarantined.
"""

from __future__ import annotations

import pyarrow as pa

from tandem.contract.features import CLASSES, CLASSIFICATION, FEATURE_NAMES, TASK

DEVICE_COLUMNS = tuple(TASK.quasi_identifiers)  # device metadata: the quasi-identifiers
TASK_METADATA = b"tandem.task"
POLICY_COLUMN = "policy"
LABEL_COLUMN = "label"

BATCH_SCHEMA = pa.schema(
    [
        pa.field("pseudonym", pa.string(), nullable=False),  # 64 lowercase hex: HMAC-SHA256 of the user id
        pa.field("key_id", pa.string(), nullable=False),  # which pseudonymization key version
        pa.field("window_id", pa.string(), nullable=False),  # 32 lowercase hex, stable per window
        pa.field("captured_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        *[pa.field(name, pa.float64(), nullable=False) for name in FEATURE_NAMES],
        # one of CLASSES, or the numeric target
        pa.field(LABEL_COLUMN, pa.string() if CLASSIFICATION else pa.float64(), nullable=False),
        *[pa.field(name, pa.string(), nullable=False) for name in DEVICE_COLUMNS],
        pa.field(POLICY_COLUMN, pa.string(), nullable=False),  # e.g. "pseudonymized/v1"
    ],
    metadata={TASK_METADATA: TASK.tag.encode()},
)
BATCH_COLUMNS = tuple(BATCH_SCHEMA.names)
LABELS = CLASSES
