"""What every sharing form says about itself: the device's transform and what the server needs to
know of it. A form is one module in this package plus one line in `FORMS` (`__init__.py`)."""

from __future__ import annotations

import pandas as pd

from tandem.task import Task


class Form:
    """A modified form a device shares its windows in. The defaults: a form that changes no value."""

    name: str = ""
    summary: str = ""
    row_wise: bool = True  # its validation suite reads the batch's rows (else the transport facts)
    hides_values: bool = False  # a verdict on such a batch keeps no example value
    sealed: bool = False  # the device seals the serialized batch; the server opens it in memory only
    charged: bool = False  # every shared window is charged to the device's privacy ledger (a formal DP guarantee)
    enforces_k: bool = False  # the server's snapshot enforces k over what it keeps
    suite: bool = False  # it has a validation suite of its own (expectations/shared_batch.<form>.json)

    def check(self, policy, task: Task) -> None:
        """Raise ValueError when the form cannot serve `task`."""

    def device(self, columns: dict, policy, key: bytes, task: Task) -> None:
        """Rewrite a batch's columns (name -> arrow array) into the form, in place, on the device."""

    def local_view(self, frame: pd.DataFrame, policy, task: Task) -> pd.DataFrame:
        """The deterministic part of the transform, for the device's own data before Core ML sees it."""
        return frame

    def public(self, policy, task: Task) -> dict:
        """What the policy's public JSON states of this form (beyond the policy's fields)."""
        return {}

    def window_events(self, policy, classes: int) -> list[dict]:
        """The privacy events one shared window costs (`tandem.privacy.dp_accountant`)."""
        return []

    def expectations(self, task: Task) -> list[tuple[str, dict]]:
        """The invariants of a batch in this form, as (GX expectation class name, its arguments):
        the validation suite ``shared_batch.<form>`` is built from them (empty: no suite of its own)."""
        return []

    def suite_meta(self) -> dict:
        """What the form's suite says it checks."""
        return {}
