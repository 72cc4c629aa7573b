"""Sealed batches: an AES-256-GCM envelope made on the device, opened by the server in memory only.

Layout (all authenticated; the header is the AEAD's associated data)::

    b"TNDMSEAL" | version (1 byte) | header length (2 bytes, big endian) | header (JSON, UTF-8)
    | nonce (12 bytes) | ciphertext + 16-byte tag

The header names the key (``key_id``), the algorithm and the content type, never the key. Keys come
only from the environment: ``TANDEM_ENCRYPTION_KEY`` (64 hex characters = 32 bytes) and
``TANDEM_ENCRYPTION_KEY_ID`` (default ``e1``); a server that still has to open batches sealed under
an older key also reads ``TANDEM_ENCRYPTION_OLD_KEYS`` (``id:hex,id:hex``). Keys are never stored
or logged.
"""

from __future__ import annotations

import json
import os
import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TNDMSEAL"
FORMAT_VERSION = 1
ALGORITHM = "AES-256-GCM"
STORED_FORMAT = "tandem-sealed-v1"
SEALED_SUFFIX = ".sealed"
KEY_ENV, KEY_ID_ENV, OLD_KEYS_ENV = "TANDEM_ENCRYPTION_KEY", "TANDEM_ENCRYPTION_KEY_ID", "TANDEM_ENCRYPTION_OLD_KEYS"
DEFAULT_KEY_ID = "e1"
_PREFIX = struct.Struct(">8sBH")


class EnvelopeError(ValueError):
    """A sealed batch that cannot be opened; the message is one line and safe to log."""


def _parse_key(hex_key: str, name: str) -> bytes:
    try:
        key = bytes.fromhex(hex_key.strip())
    except ValueError:
        raise EnvelopeError(f"{name} is not hex") from None
    if len(key) != 32:
        raise EnvelopeError(f"{name} must be 32 bytes (64 hex characters), got {len(key)} bytes")
    return key


def sealing_key_from_env() -> tuple[str, bytes]:
    """(key id, key) the device seals with. Raises RuntimeError when the key is not set."""
    hex_key = os.environ.get(KEY_ENV)
    if not hex_key:
        raise RuntimeError(f"{KEY_ENV} is not set. It is a secret: export 32 random bytes as hex "
                           f"(e.g. `export {KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')`).")
    return os.environ.get(KEY_ID_ENV) or DEFAULT_KEY_ID, _parse_key(hex_key, KEY_ENV)


def keyring_from_env() -> dict[str, bytes]:
    """Every key the server may open batches with, by key id (empty when none is set)."""
    ring: dict[str, bytes] = {}
    for item in filter(None, (os.environ.get(OLD_KEYS_ENV) or "").split(",")):
        key_id, _, hex_key = item.partition(":")
        ring[key_id.strip()] = _parse_key(hex_key, f"{OLD_KEYS_ENV}[{key_id.strip()}]")
    if os.environ.get(KEY_ENV):
        key_id, key = sealing_key_from_env()
        ring[key_id] = key
    return ring


def is_sealed(data: bytes) -> bool:
    return bytes(data[: len(MAGIC)]) == MAGIC


def seal(plaintext: bytes, key: bytes, key_id: str, content: str = "application/vnd.apache.parquet") -> bytes:
    """The sealed envelope of `plaintext` (a fresh random nonce each time)."""
    header = json.dumps({"alg": ALGORITHM, "key_id": key_id, "content": content}, sort_keys=True).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    nonce = secrets.token_bytes(12)
    return prefix + nonce + AESGCM(key).encrypt(nonce, plaintext, prefix)


def read_header(data: bytes) -> dict:
    """The envelope's header (unauthenticated until opened). Raises EnvelopeError."""
    data = bytes(data)
    if len(data) < _PREFIX.size or not is_sealed(data):
        raise EnvelopeError("not a sealed batch (no envelope magic)")
    _, version, length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise EnvelopeError(f"unknown envelope version {version}")
    end = _PREFIX.size + length
    if len(data) < end + 12 + 16:
        raise EnvelopeError("truncated envelope")
    try:
        header = json.loads(data[_PREFIX.size:end])
    except ValueError:
        raise EnvelopeError("unreadable envelope header") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM or not isinstance(header.get("key_id"), str):
        raise EnvelopeError("envelope header lacks alg/key_id")
    return header


def open_sealed(data: bytes, keyring: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """(plaintext, header) of a sealed batch, in memory. Raises EnvelopeError when it is not a
    sealed batch, names a key the keyring lacks, or fails authentication (tampered, truncated,
    wrong key)."""
    data = bytes(data)
    header = read_header(data)
    keyring = keyring_from_env() if keyring is None else keyring
    key = keyring.get(header["key_id"])
    if key is None:
        known = ", ".join(sorted(keyring)) or "none"
        raise EnvelopeError(f"sealed with unknown key id {header['key_id'][:64]!r} (server has: {known})")
    _, _, length = _PREFIX.unpack_from(data)
    end = _PREFIX.size + length
    nonce, ciphertext = data[end:end + 12], data[end + 12:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, data[:end]), header
    except InvalidTag:
        raise EnvelopeError(f"sealed batch failed authentication under key {header['key_id']!r}: "
                            "tampered, truncated or sealed with another key") from None
