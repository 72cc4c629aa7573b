"""The one sealed container both sides use: sealed batches (device -> server) and personal-model
backups (device -> its own backup store). AES-256-GCM; everything before the nonce is the AEAD's
associated data, so the header can be read before decrypting (to pick the key) but not altered::

    magic | version (1 byte) | header length (2 bytes, big endian) | header (JSON, UTF-8)
    | nonce (12 bytes) | ciphertext + 16-byte tag

The header names the key (``key_id``) and the algorithm, never the key. cryptography only, so the
device runtime can use it. TandemKit's twin (``swift/Sources/TandemSecurity/SealedContainer.swift``)
writes the same bytes (the header JSON exactly as ``json.dumps(..., sort_keys=True)``) and both sides
are tested against each other (``tests/test_swift_security.py``)."""

from __future__ import annotations

import json
import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "AES-256-GCM"
VERSION = 1
_LENGTHS = struct.Struct(">BH")  # version, header length
NONCE_BYTES, TAG_BYTES = 12, 16


class SealError(ValueError):
    """The container cannot be read or opened; the message is one line and safe to log."""


class NotSealed(SealError):
    """The bytes do not start with the expected magic."""


class AuthenticationFailed(SealError):
    """Tampered, truncated or sealed with another key."""


def check_key(key: bytes, name: str = "key") -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise SealError(f"{name} must be 32 bytes (AES-256)")
    return bytes(key)


def seal(plaintext: bytes, key: bytes, magic: bytes, header: dict) -> bytes:
    """The sealed container of `plaintext` (a fresh random 96-bit nonce each time)."""
    head = json.dumps({"alg": ALGORITHM, **header}, sort_keys=True).encode()
    prefix = magic + _LENGTHS.pack(VERSION, len(head)) + head
    nonce = secrets.token_bytes(NONCE_BYTES)
    return prefix + nonce + AESGCM(check_key(key)).encrypt(nonce, bytes(plaintext), prefix)


def is_sealed(data: bytes, magic: bytes) -> bool:
    return bytes(data[: len(magic)]) == magic


def _prefix_end(data: bytes, magic: bytes) -> int:
    if not is_sealed(data, magic) or len(data) < len(magic) + _LENGTHS.size:
        raise NotSealed("not a sealed container (no magic)")
    version, length = _LENGTHS.unpack_from(data, len(magic))
    if version != VERSION:
        raise SealError(f"unknown container version {version}")
    end = len(magic) + _LENGTHS.size + length
    if len(data) < end + NONCE_BYTES + TAG_BYTES:
        raise SealError("truncated container")
    return end


def read_header(data: bytes, magic: bytes) -> dict:
    """The header (authenticated only once opened). Raises SealError."""
    data = bytes(data)
    end = _prefix_end(data, magic)
    try:
        header = json.loads(data[len(magic) + _LENGTHS.size:end])
    except ValueError:
        raise SealError("unreadable header") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM or not isinstance(header.get("key_id"), str):
        raise SealError("header lacks alg/key_id")
    return header


def open_sealed(data: bytes, key: bytes, magic: bytes) -> tuple[bytes, dict]:
    """(plaintext, header). Raises AuthenticationFailed when the bytes were altered or the key is wrong."""
    data = bytes(data)
    header = read_header(data, magic)
    end = _prefix_end(data, magic)
    nonce, ciphertext = data[end:end + NONCE_BYTES], data[end + NONCE_BYTES:]
    try:
        return AESGCM(check_key(key)).decrypt(nonce, ciphertext, data[:end]), header
    except InvalidTag:
        raise AuthenticationFailed(f"failed authentication under key {header['key_id'][:64]!r}: "
                                   "tampered, truncated or sealed with another key") from None
