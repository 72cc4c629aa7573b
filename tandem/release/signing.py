"""Signed releases: every manifest is signed with Ed25519 and an app build pins the public key(s).

The checksums in a manifest only prove that files match the manifest; anyone who can write the store
can rewrite both. The signature is what proves the server published it. The private key comes from
the environment (``TANDEM_SIGNING_KEY``, a secret) and never enters the store; the key id is a
fingerprint of the public key, so rotation is: publish with the new key, let app builds pin the new
and the old public key, later drop the old one.

``manifest.sig`` (JSON) sits beside ``manifest.json``: ``{"alg": "ed25519", "key_id", "signature"}``,
the signature over the manifest's exact bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tandem.settings import Settings

SIGNATURE = "manifest.sig"
ALGORITHM = "ed25519"


class SignatureError(ValueError):
    """A release's signature is missing, malformed, by an unpinned key, or does not verify."""


class SigningKeyError(ValueError):
    """A signing or public key cannot be read."""


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint: names the key in every signature without revealing anything secret."""
    return "ed25519:" + hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def public_hex(public: Ed25519PublicKey) -> str:
    return _raw_public(public).hex()


def load_private(text: str) -> Ed25519PrivateKey:
    """64 hex characters (the raw 32-byte seed) or a PEM private key."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError("the signing key is not an Ed25519 key")
            return key
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    except SigningKeyError:
        raise
    except ValueError:
        raise SigningKeyError("TANDEM_SIGNING_KEY is not an Ed25519 private key (64 hex characters or PEM)") from None


def load_public(text: str) -> Ed25519PublicKey:
    """64 hex characters, a PEM public key, or the path of a file holding either."""
    text = text.strip()
    if not text.startswith("-----BEGIN") and not _is_hex64(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise SigningKeyError(f"public key {text[:80]!r} is neither 64 hex characters, PEM, nor a readable file")
        text = path.read_text().strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError("the public key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except SigningKeyError:
        raise
    except ValueError:
        raise SigningKeyError("the public key is not an Ed25519 public key (64 hex characters or PEM)") from None


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, manifest_bytes: bytes) -> bytes:
        """The manifest.sig file for these exact manifest bytes."""
        signature = self.private.sign(manifest_bytes)
        return json.dumps({"alg": ALGORITHM, "key_id": self.key_id,
                           "signature": base64.b64encode(signature).decode()}, indent=2).encode()


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys an app build pins (several during a rotation), by key id."""

    keys: dict

    @classmethod
    def of(cls, publics: list[Ed25519PublicKey]) -> "TrustedKeys":
        return cls({key_id(p): p for p in publics})

    def verify(self, manifest_bytes: bytes, signature_file: bytes | None) -> str:
        """The key id that signed `manifest_bytes`; raises SignatureError otherwise."""
        if not self.keys:
            raise SignatureError("no public key pinned: pass --public-key or set TANDEM_RELEASE_PUBLIC_KEYS")
        if signature_file is None:
            raise SignatureError("the release is not signed (no manifest.sig)")
        try:
            sig = json.loads(signature_file)
            kid, alg, raw = sig["key_id"], sig["alg"], base64.b64decode(sig["signature"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise SignatureError("manifest.sig is malformed") from None
        if alg != ALGORITHM:
            raise SignatureError(f"manifest.sig uses {alg!r}, not {ALGORITHM}")
        public = self.keys.get(kid)
        if public is None:
            raise SignatureError(f"the release is signed by key {kid!r}, which is not pinned")
        try:
            public.verify(raw, manifest_bytes)
        except InvalidSignature:
            raise SignatureError(f"the manifest's signature by {kid} does not verify: the release was altered") from None
        return kid


def generate() -> tuple[str, str]:
    """A new key pair as (private hex, public hex)."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return raw.hex(), public_hex(private.public_key())


def signer_from_settings(settings: Settings) -> Signer | None:
    if settings.signing_key is None:
        return None
    return Signer(load_private(settings.signing_key.get_secret_value()))


def require_signer(settings: Settings) -> Signer:
    signer = signer_from_settings(settings)
    if signer is None:
        raise SigningKeyError("TANDEM_SIGNING_KEY is not set: releases must be signed. Create a key pair with "
                        "`tandem keys create` and export TANDEM_SIGNING_KEY (a secret) from its env file")
    return signer


def trusted_from(settings: Settings, extra: list[str] | None = None) -> TrustedKeys:
    """Pinned keys: `extra` (the --public-key options) and TANDEM_RELEASE_PUBLIC_KEYS (comma-separated)."""
    texts = list(extra or [])
    if settings.release_public_keys:
        texts += [t for t in settings.release_public_keys.split(",") if t.strip()]
    return TrustedKeys.of([load_public(t) for t in texts])
