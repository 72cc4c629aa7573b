"""pseudonymized (always on): the user id leaves the device only as a keyed HMAC
(`tandem.privacy.pseudonyms`); ``key_id`` names the key version. The batch builder writes the
pseudonym and the window ids; no value changes here."""

from __future__ import annotations

from tandem.privacy.forms.base import Form


class Pseudonymized(Form):
    name = "pseudonymized"
    summary = "keyed HMAC of the user id; key_id names the key version (rotation)"


FORM = Pseudonymized()
