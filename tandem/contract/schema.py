"""The shared-batch format: what a device uploads to ``incoming/`` and what the server keeps.

One parquet file per batch; one row per window, already featurized on the device (raw sensor
streams never leave it) and already in the sharing policy's modified form.
"""

from __future__ import annotations

import pyarrow as pa

from tandem.contract.features import ACTIVITIES, FEATURE_NAMES

DEVICE_COLUMNS = ("device_model", "os_version", "app_version", "locale")  # quasi-identifiers
POLICY_COLUMN = "policy"
LABEL_COLUMN = "label"

BATCH_SCHEMA = pa.schema(
    [
        pa.field("pseudonym", pa.string(), nullable=False),  # 64 lowercase hex: HMAC-SHA256 of the user id
        pa.field("key_id", pa.string(), nullable=False),  # which pseudonymization key version
        pa.field("window_id", pa.string(), nullable=False),  # 32 lowercase hex, stable per window
        pa.field("captured_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        *[pa.field(name, pa.float64(), nullable=False) for name in FEATURE_NAMES],
        pa.field(LABEL_COLUMN, pa.string(), nullable=False),  # one of ACTIVITIES
        *[pa.field(name, pa.string(), nullable=False) for name in DEVICE_COLUMNS],
        pa.field(POLICY_COLUMN, pa.string(), nullable=False),  # e.g. "pseudonymized/v1"
    ]
)
BATCH_COLUMNS = tuple(BATCH_SCHEMA.names)
LABELS = ACTIVITIES
