"""Signed channel pointers (rollback protection, as TUF's signed and versioned metadata).

A release manifest is signed, but which release a channel names was not: anyone who can write the
store could point `staging` at an older, genuinely signed release, and app builds would take it.
Now the pointer itself is signed, and `tandem pull` verifies it and refuses any version below the
minimum the app build pins (`--min-version` or TANDEM_MIN_RELEASE_VERSION). Moving a channel back
is a decision (`tandem rollback` / `promote` re-sign the pointer), not something a store writer can do.

The pointer (``channels/<model>/<channel>.json``) is JSON; the signature covers only the
*signed fields*, serialized canonically, so any reader (TandemKit in Swift too) rebuilds the exact bytes:

    {"channel":"staging","issued_at":"2026-12-03T13:00:00Z","manifest_sha256":"<64 hex>","model":"tandem-har","version":"4"}

i.e. the five fields as JSON strings, keys sorted, no spaces, ASCII (the names and versions are
restricted to [a-z0-9._-], so no escaping ever occurs). The pointer carries
``"signature": {"alg": "ed25519", "key_id": "ed25519:<16 hex>", "signature": "<base64 of 64 bytes>"}``,
verified against the same pinned keys as the manifests. Other fields (`manifest`, `reason`,
`history`, `updated_at`) are informational and not trusted.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature

from tandem.release.signing import ALGORITHM, Signer, TrustedKeys

SIGNED_FIELDS = ("channel", "issued_at", "manifest_sha256", "model", "version")


class PointerError(ValueError):
    """A channel pointer that is unsigned, altered, signed by an unpinned key, or below the pinned minimum."""


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_bytes(pointer: dict) -> bytes:
    """The exact bytes the signature covers."""
    missing = [f for f in SIGNED_FIELDS if not isinstance(pointer.get(f), str)]
    if missing:
        raise PointerError(f"the channel pointer lacks the signed field(s) {', '.join(missing)}")
    return json.dumps({f: pointer[f] for f in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def sign(pointer: dict, signer: Signer) -> dict:
    """The pointer with its signature."""
    raw = signer.private.sign(canonical_bytes(pointer))
    return {**pointer, "signature": {"alg": ALGORITHM, "key_id": signer.key_id,
                                     "signature": base64.b64encode(raw).decode()}}


def verify(pointer: dict, trust: TrustedKeys, model: str, channel: str) -> str:
    """The key id that signed this pointer for `model`'s `channel`; raises PointerError otherwise."""
    where = f"channel {channel!r} of {model}"
    sig = pointer.get("signature")
    if not isinstance(sig, dict):
        raise PointerError(f"the {where} is not signed: refused (the server re-signs it with "
                           "`tandem promote --version N` or its next release)")
    try:
        kid, alg, raw = sig["key_id"], sig["alg"], base64.b64decode(sig["signature"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise PointerError(f"the {where} has a malformed signature: refused") from None
    if alg != ALGORITHM:
        raise PointerError(f"the {where} is signed with {alg!r}, not {ALGORITHM}: refused")
    public = trust.keys.get(kid)
    if public is None:
        raise PointerError(f"the {where} is signed by key {kid!r}, which is not pinned: refused")
    try:
        public.verify(raw, canonical_bytes(pointer))
    except InvalidSignature:
        raise PointerError(f"the {where}'s signature by {kid} does not verify: the pointer was altered") from None
    if pointer["model"] != model or pointer["channel"] != channel:
        raise PointerError(f"the pointer at {where} is signed for {pointer['model']}'s channel {pointer['channel']!r}: "
                           "refused (a pointer copied from elsewhere)")
    return kid


def check_minimum(version: str | int, minimum: int | None, where: str) -> None:
    """An app build pins the lowest version it accepts: anything older is a rollback it did not ask for."""
    if minimum is not None and int(version) < minimum:
        raise PointerError(f"{where} is version {version}, below the minimum {minimum} this build accepts "
                           "(--min-version / TANDEM_MIN_RELEASE_VERSION): refused as a rollback")
