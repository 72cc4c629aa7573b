"""Request signing for the device gateway (docs/wire-format.md, section 2): an app install signs every
request with its P-256 key; the gateway verifies. cryptography only, so both sides (and the device
runtime) can use it.

The signed message is seven lines: a scheme tag, method, path, the body's SHA-256 (hex), the Unix
timestamp, a nonce and the install id. The signature is ECDSA P-256 / SHA-256 in DER (what CryptoKit's
``signature(for:).derRepresentation`` and OpenSSL's ``i2d_ECDSA_SIG`` produce), base64 in the header.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SCHEME = "TANDEM-P256-SHA256-V1"
INSTALL, TIMESTAMP, NONCE, CONTENT_SHA256, SIGNATURE = (
    "X-Tandem-Install", "X-Tandem-Timestamp", "X-Tandem-Nonce", "X-Tandem-Content-SHA256", "X-Tandem-Signature")
HEADERS = (INSTALL, TIMESTAMP, NONCE, CONTENT_SHA256, SIGNATURE)
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
HEX64 = re.compile(r"[0-9a-f]{64}")
ENROLL_CONTEXT = b"tandem-enroll-v1"


class SigningError(ValueError):
    """A request whose signature cannot be accepted; one line, safe to return."""


def public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """X9.63 uncompressed point (65 bytes): CryptoKit's ``x963Representation``."""
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def load_public(x963: bytes) -> ec.EllipticCurvePublicKey:
    if len(x963) != 65 or x963[0] != 4:
        raise SigningError("public_key must be a 65-byte uncompressed P-256 point (x963Representation)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), x963)
    except ValueError:
        raise SigningError("public_key is not a point on P-256") from None


def install_id(x963: bytes) -> str:
    return hashlib.sha256(x963).hexdigest()


def enroll_client_data_hash(x963: bytes) -> bytes:
    """What an App Attest attestation of this install's key is bound to."""
    return hashlib.sha256(ENROLL_CONTEXT + x963).digest()


def message(method: str, path: str, body_sha256: str, timestamp: str, nonce: str, install: str) -> bytes:
    return "\n".join([SCHEME, method.upper(), path, body_sha256, timestamp, nonce, install]).encode()


def sign(key: ec.EllipticCurvePrivateKey, method: str, path: str, body: bytes, now: float | None = None,
         nonce: str | None = None) -> dict[str, str]:
    """The signing headers of one request (the device's side)."""
    install = install_id(public_bytes(key.public_key()))
    digest = hashlib.sha256(body).hexdigest()
    stamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    der = key.sign(message(method, path, digest, stamp, nonce, install), ec.ECDSA(hashes.SHA256()))
    return {INSTALL: install, TIMESTAMP: stamp, NONCE: nonce, CONTENT_SHA256: digest,
            SIGNATURE: base64.b64encode(der).decode()}


def parse(headers, body: bytes, now: float, max_skew: int) -> dict[str, str]:
    """The signing headers, checked for shape, digest and time (not yet the signature: that needs the
    install's key). Raises SigningError."""
    got = {h: headers.get(h) for h in HEADERS}
    missing = [h for h, v in got.items() if not v]
    if missing:
        raise SigningError(f"unsigned request: missing {', '.join(missing)}")
    if not HEX64.fullmatch(got[INSTALL]):
        raise SigningError(f"{INSTALL} must be 64 lowercase hex (sha256 of the public key)")
    if not NONCE_PATTERN.fullmatch(got[NONCE]):
        raise SigningError(f"{NONCE} must be 16-64 of [A-Za-z0-9_-]")
    if not re.fullmatch(r"[0-9]{1,12}", got[TIMESTAMP]):
        raise SigningError(f"{TIMESTAMP} must be Unix seconds")
    skew = int(got[TIMESTAMP]) - now
    if abs(skew) > max_skew:
        raise SigningError(f"stale timestamp: {abs(int(skew))} s {'ahead of' if skew > 0 else 'behind'} the gateway's "
                           f"clock (at most {max_skew} s); re-sign with the current time")
    if got[CONTENT_SHA256] != hashlib.sha256(body).hexdigest():
        raise SigningError(f"{CONTENT_SHA256} does not match the body")
    return got


def verify(got: dict[str, str], method: str, path: str, x963: bytes) -> None:
    """Raises SigningError unless `got[SIGNATURE]` signs this request with the install's key."""
    try:
        der = base64.b64decode(got[SIGNATURE], validate=True)
    except ValueError:
        raise SigningError(f"{SIGNATURE} is not base64") from None
    msg = message(method, path, got[CONTENT_SHA256], got[TIMESTAMP], got[NONCE], got[INSTALL])
    try:
        load_public(x963).verify(der, msg, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise SigningError("bad signature: the request is not signed by this install's key") from None
