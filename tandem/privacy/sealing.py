"""Sealed batches: the device seals a batch (``tandem.contract.sealing``, magic ``TNDMSEAL``), the
server opens it in memory only.

Keys come only from the settings (the environment): ``TANDEM_ENCRYPTION_KEY`` (64 hex characters =
32 bytes) and ``TANDEM_ENCRYPTION_KEY_ID`` (default ``e1``); a server that still has to open batches
sealed under an older key also reads ``TANDEM_ENCRYPTION_OLD_KEYS`` (``id:hex,id:hex``). Keys are
never stored or logged.
"""

from __future__ import annotations

from tandem.contract import sealing as container
from tandem.settings import Settings

MAGIC = b"TNDMSEAL"
ALGORITHM = container.ALGORITHM
STORED_FORMAT = "tandem-sealed-v1"
SEALED_SUFFIX = ".sealed"
PARQUET = "application/vnd.apache.parquet"


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


def sealing_key(settings: Settings) -> tuple[str, bytes]:
    """(key id, key) the device seals with. Raises RuntimeError when the key is not set."""
    if settings.encryption_key is None:
        raise RuntimeError("TANDEM_ENCRYPTION_KEY is not set. It is a secret: export 32 random bytes as hex "
                           "(e.g. `export TANDEM_ENCRYPTION_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')`).")
    return settings.encryption_key_id, _parse_key(settings.encryption_key.get_secret_value(), "TANDEM_ENCRYPTION_KEY")


def keyring(settings: Settings) -> dict[str, bytes]:
    """Every key the server may open batches with, by key id (empty when none is set)."""
    ring: dict[str, bytes] = {}
    old = settings.encryption_old_keys.get_secret_value() if settings.encryption_old_keys else ""
    for item in filter(None, old.split(",")):
        key_id, _, hex_key = item.partition(":")
        ring[key_id.strip()] = _parse_key(hex_key, f"TANDEM_ENCRYPTION_OLD_KEYS[{key_id.strip()}]")
    if settings.encryption_key is not None:
        key_id, key = sealing_key(settings)
        ring[key_id] = key
    return ring


def is_sealed(data: bytes) -> bool:
    return container.is_sealed(data, MAGIC)


def seal(plaintext: bytes, key: bytes, key_id: str, content: str = PARQUET) -> bytes:
    return container.seal(plaintext, key, MAGIC, {"key_id": key_id, "content": content})


def read_header(data: bytes) -> dict:
    """The envelope's header (unauthenticated until opened). Raises EnvelopeError."""
    try:
        return container.read_header(data, MAGIC)
    except container.SealError as exc:
        raise EnvelopeError(f"sealed batch: {exc}") from None


def open_sealed(data: bytes, ring: dict[str, bytes]) -> tuple[bytes, dict]:
    """(plaintext, header) of a sealed batch, in memory. Raises EnvelopeError when it is not a
    sealed batch, names a key the keyring lacks, or fails authentication."""
    header = read_header(data)
    key = ring.get(header["key_id"])
    if key is None:
        known = ", ".join(sorted(ring)) or "none"
        raise EnvelopeError(f"sealed with unknown key id {header['key_id'][:64]!r} (server has: {known})")
    try:
        return container.open_sealed(data, key, MAGIC)
    except container.SealError as exc:
        raise EnvelopeError(f"sealed batch {exc}") from None
