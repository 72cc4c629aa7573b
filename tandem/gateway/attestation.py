"""Attestation verifiers for enrollment, by format name (a registry: add a class, register it).

- ``development``: accepts any install (the demo and the tests; never enable it in production);
- ``apple-appattest``: Apple's App Attest attestation object, checked as Apple documents it
  (https://developer.apple.com/documentation/devicecheck/validating-apps-that-connect-to-your-server):
  CBOR ``{fmt, attStmt: {x5c, receipt}, authData}``, the x5c chain up to the configured root, the nonce
  SHA-256(authData || clientDataHash) in the credential certificate's extension 1.2.840.113635.100.8.2,
  rpIdHash = SHA-256(app id), the key id = SHA-256 of the credential public key, counter 0, the aaguid
  of the environment, credentialId = key id. The clientDataHash binds the install's signing key
  (`request_signing.enroll_client_data_hash`).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.contract.request_signing import enroll_client_data_hash
from tandem.settings import Settings

NONCE_OID = x509.ObjectIdentifier("1.2.840.113635.100.8.2")
AAGUID_PRODUCTION = b"appattest" + b"\x00" * 7
AAGUID_DEVELOPMENT = b"appattestdevelop"


class AttestationError(ValueError):
    """The attestation does not hold; one line, safe to return."""


class DevelopmentVerifier:
    name = "development"

    def __init__(self, settings: Settings):
        pass

    def verify(self, attestation: dict, public_key: bytes) -> dict:
        return {"format": self.name}


def _b64(attestation: dict, field: str) -> bytes:
    value = attestation.get(field)
    if not isinstance(value, str):
        raise AttestationError(f"attestation.{field} must be base64")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise AttestationError(f"attestation.{field} is not base64") from None


def _der_nonce(ext: bytes) -> bytes:
    """The OCTET STRING inside ``SEQUENCE { [1] EXPLICIT OCTET STRING }`` (Apple's nonce extension)."""
    def tlv(data: bytes, at: int, tag: int) -> tuple[int, int]:
        if at + 2 > len(data) or data[at] != tag:
            raise AttestationError("the credential certificate's nonce extension is malformed")
        length, at = data[at + 1], at + 2
        if length & 0x80:
            n = length & 0x7F
            length, at = int.from_bytes(data[at:at + n], "big"), at + n
        if at + length > len(data):
            raise AttestationError("the credential certificate's nonce extension is truncated")
        return at, length
    at, _ = tlv(ext, 0, 0x30)
    at, _ = tlv(ext, at, 0xA1)
    at, length = tlv(ext, at, 0x04)
    return ext[at:at + length]


class AppAttestVerifier:
    name = "apple-appattest"

    def __init__(self, settings: Settings):
        if not settings.gateway_app_id or not settings.gateway_appattest_root:
            raise RuntimeError("apple-appattest needs TANDEM_GATEWAY_APP_ID and TANDEM_GATEWAY_APPATTEST_ROOT (a PEM file)")
        self.app_id = settings.gateway_app_id
        self.root = x509.load_pem_x509_certificate(Path(settings.gateway_appattest_root).read_bytes())
        self.aaguid = AAGUID_PRODUCTION if settings.gateway_appattest_production else AAGUID_DEVELOPMENT

    def _chain(self, x5c) -> x509.Certificate:
        if not isinstance(x5c, list) or not 1 <= len(x5c) <= 4 or not all(isinstance(c, bytes) for c in x5c):
            raise AttestationError("attStmt.x5c must be a list of DER certificates")
        try:
            certs = [x509.load_der_x509_certificate(c) for c in x5c]
        except ValueError:
            raise AttestationError("attStmt.x5c holds a certificate that cannot be read") from None
        now = datetime.now(timezone.utc)
        for cert, issuer in zip(certs, certs[1:] + [self.root]):
            try:
                cert.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError) as e:
                raise AttestationError(f"the certificate chain does not reach the configured root ({type(e).__name__})") from None
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise AttestationError("a certificate in the chain is outside its validity period")
        return certs[0]

    def verify(self, attestation: dict, public_key: bytes) -> dict:
        key_id = _b64(attestation, "key_id")
        try:
            obj = cbor2.loads(_b64(attestation, "object"))
        except Exception:  # cbor2 raises several types on malformed input
            raise AttestationError("attestation.object is not CBOR") from None
        if not isinstance(obj, dict) or obj.get("fmt") != "apple-appattest":
            raise AttestationError("attestation object's fmt is not apple-appattest")
        stmt, auth = obj.get("attStmt"), obj.get("authData")
        if not isinstance(stmt, dict) or not isinstance(auth, bytes) or len(auth) < 55:
            raise AttestationError("attestation object lacks attStmt or authData")
        cred = self._chain(stmt.get("x5c"))
        nonce = hashlib.sha256(auth + enroll_client_data_hash(public_key)).digest()
        try:
            ext = cred.extensions.get_extension_for_oid(NONCE_OID).value.value
        except x509.ExtensionNotFound:
            raise AttestationError("the credential certificate has no App Attest nonce") from None
        if _der_nonce(ext) != nonce:
            raise AttestationError("the attestation's nonce does not match this install's key")
        cred_key = cred.public_key()
        if not isinstance(cred_key, ec.EllipticCurvePublicKey):
            raise AttestationError("the credential key is not P-256")
        point = cred_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        if hashlib.sha256(point).digest() != key_id:
            raise AttestationError("key_id is not the SHA-256 of the attested public key")
        if auth[:32] != hashlib.sha256(self.app_id.encode()).digest():
            raise AttestationError("rpIdHash is not this app's id")
        if int.from_bytes(auth[33:37], "big") != 0:
            raise AttestationError("the attestation's counter is not 0")
        if auth[37:53] != self.aaguid:
            raise AttestationError("the aaguid is not this environment's (production / development)")
        length = int.from_bytes(auth[53:55], "big")
        if auth[55:55 + length] != key_id:
            raise AttestationError("authData's credentialId is not the key id")
        return {"format": self.name, "key_id": key_id.hex()}


VERIFIERS = {cls.name: cls for cls in (DevelopmentVerifier, AppAttestVerifier)}


def enabled(settings: Settings) -> dict:
    """The verifiers this gateway accepts, by format (TANDEM_GATEWAY_ATTESTATION)."""
    names = [n.strip() for n in settings.gateway_attestation.split(",") if n.strip()]
    unknown = [n for n in names if n not in VERIFIERS]
    if unknown:
        raise RuntimeError(f"TANDEM_GATEWAY_ATTESTATION names unknown format(s) {unknown}; known: {sorted(VERIFIERS)}")
    return {n: VERIFIERS[n](settings) for n in names}
