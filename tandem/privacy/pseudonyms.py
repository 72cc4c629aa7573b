"""Pseudonyms and the shapes of raw identifiers that must never reach the server."""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_REGEX = r"^[0-9a-f]{64}$"
EMAIL_REGEX = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE_REGEX = r"\+?\d[\d ()-]{7,}\d"


def pseudonymize(user_id: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 of the user id, lowercase hex. Without the key it cannot be reversed or linked."""
    if not key:
        raise ValueError("a pseudonymization key is required")
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()
