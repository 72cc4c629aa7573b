"""encrypted: the batch is sealed on the device (`tandem.privacy.sealing`, AES-256-GCM); the server
opens it in memory only. Its suite runs on the transport facts (how the object was stored), not rows."""

from __future__ import annotations

from tandem.privacy import sealing
from tandem.privacy.forms.base import Form
from tandem.task import Task

TRANSPORT_COLUMNS = ("stored_format", "aead", "envelope_key_id")


class Encrypted(Form):
    name = "encrypted"
    summary = "the batch sealed on the device (AES-256-GCM); opened by the server in memory only"
    row_wise = False
    suite = True
    hides_values = True
    sealed = True

    def expectations(self, task: Task) -> list[tuple[str, dict]]:
        return [
            ("ExpectTableColumnsToMatchOrderedList", {"column_list": list(TRANSPORT_COLUMNS)}),
            ("ExpectTableRowCountToBeBetween", {"min_value": 1, "max_value": 1}),
            ("ExpectColumnValuesToBeInSet", {"column": "stored_format", "value_set": [sealing.STORED_FORMAT]}),
            ("ExpectColumnValuesToBeInSet", {"column": "aead", "value_set": [sealing.ALGORITHM]}),
            ("ExpectColumnValuesToMatchRegex", {"column": "envelope_key_id", "regex": r"^[A-Za-z0-9._-]{1,64}$"}),
        ]

    def suite_meta(self) -> dict:
        return {"checks": "the stored object was sealed (not parquet plaintext); run on the transport facts",
                "read_as": "one row: " + ", ".join(TRANSPORT_COLUMNS)}


FORM = Encrypted()
