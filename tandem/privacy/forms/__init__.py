"""The sharing forms, one module each (its device transform and what the server needs to know of it),
registered here. A new form: one module with a `Form` subclass, one line below. The registry's order
is the canonical order of forms in a policy's name (``pseudonymized+anonymized+dp+encrypted/v1``)."""

from __future__ import annotations

from tandem.privacy.forms import anonymized, dp, encrypted, pseudonymized
from tandem.privacy.forms.base import Form

FORMS: dict[str, Form] = {
    "pseudonymized": pseudonymized.FORM,
    "anonymized": anonymized.FORM,
    "dp": dp.FORM,
    "encrypted": encrypted.FORM,
}

__all__ = ["FORMS", "Form"]
