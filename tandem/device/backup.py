"""Encrypted backup of a personal model, and what to do with it after a base-model upgrade.

The container is Tandem's one sealed format (``tandem.contract.sealing``, magic ``TNDB``): the header
(format version, key id, algorithm) is authenticated but readable before decrypting. The plaintext
is u32 metadata length | metadata JSON | personal .mlmodel bytes. TandemKit (Swift,
``TandemSecurity/ModelBackup.swift``) reads and writes the same bytes.

Every backup carries a monotonic ``counter`` (in the encrypted metadata): the app keeps the highest
counter it has written or restored (in the keychain) and restores nothing below it, so an older
genuine backup cannot be put back over a newer one (rollback). Format 2 backups (before the counter)
stay readable and count as counter 0. Unknown metadata fields (a newer app's) are ignored; missing or
mistyped ones, and a payload that is not a Core ML model, are a ``MalformedBackup``.

A personal model only makes sense on top of the base it was trained from: restoring checks the
base's sha256 and raises ``IncompatibleBase`` otherwise, so the app re-personalizes the new base
from the data it keeps on the device (``reconcile``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import datetime, timezone

from google.protobuf.message import DecodeError

from tandem.contract import sealing
from tandem.device.runtime import DeviceModel, ModelError
from tandem.device.update import update

MAGIC = b"TNDB"
FORMAT_VERSION = 3  # 3: metadata carries the monotonic counter; 2: the shared container (1 had no version byte)
READABLE_VERSIONS = (2, 3)
ALGORITHM = sealing.ALGORITHM


class BackupError(Exception):
    """The backup cannot be used."""


class TamperedBackup(BackupError):
    """Authentication failed: the bytes were altered, or the key is not the one that sealed them."""


class IncompatibleBase(BackupError):
    """The backup's personal model was trained from another base than the installed one."""


class BackupKeyError(BackupError, ValueError):
    """The key is not a 32-byte AES-256 key."""


class MalformedBackup(BackupError):
    """Authentic, but its metadata or its payload is not what a backup holds."""


class RolledBackBackup(BackupError):
    """An older backup than one the device has already written or restored."""


@dataclass(frozen=True)
class BackupMetadata:
    base_version: str
    base_sha256: str
    pseudonym: str
    sample_count: int
    created_at: str  # ISO 8601, UTC
    personal_sha256: str = ""
    counter: int = 0  # monotonic per device; 0 in format 2 backups

    @classmethod
    def from_json(cls, raw: bytes, format_version: int = FORMAT_VERSION) -> "BackupMetadata":
        """Parse and type-check the metadata; unknown fields (a newer app's) are ignored. From format 3
        on the counter is required."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise MalformedBackup("backup metadata is not JSON") from None
        if not isinstance(data, dict):
            raise MalformedBackup("backup metadata is not a JSON object")
        values = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is MISSING or (f.name == "counter" and format_version >= 3):
                    raise MalformedBackup(f"backup metadata lacks {f.name!r}")
                continue
            value, kind = data[f.name], _FIELD_TYPES[f.name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise MalformedBackup(f"backup metadata field {f.name!r} is not a {kind.__name__}")
            values[f.name] = value
        if values.get("sample_count", 0) < 0 or values.get("counter", 0) < 0:
            raise MalformedBackup("backup metadata holds a negative count")
        return cls(**values)


_FIELD_TYPES = {"base_version": str, "base_sha256": str, "pseudonym": str, "sample_count": int,
                "created_at": str, "personal_sha256": str, "counter": int}


@dataclass
class Restored:
    model: DeviceModel
    metadata: BackupMetadata


@dataclass
class Reconciled:
    model: DeviceModel
    restored: bool  # True: the backup was used; False: re-personalized the new base
    reason: str
    history: list[float] | None = None


def _sha(model) -> str:
    """sha256 of the model file's bytes (DeviceModel, bytes or path)."""
    return DeviceModel.load(model).sha256


def create_backup(personal, *, base, base_version: str, pseudonym: str, sample_count: int,
                  key: bytes, key_id: str, counter: int = 0, created_at: datetime | None = None) -> bytes:
    """Seal ``personal`` (DeviceModel or .mlmodel bytes) trained from ``base`` (DeviceModel or bytes).
    ``counter``: one more than the highest the device has written or restored (it keeps that number)."""
    _check(key)
    if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
        raise BackupError("the backup counter must be a non-negative integer")
    body = personal.to_bytes() if isinstance(personal, DeviceModel) else bytes(personal)
    if not isinstance(personal, DeviceModel):
        _load_model(body, "the personal model to back up")
    meta = BackupMetadata(
        base_version=str(base_version), base_sha256=_sha(base), pseudonym=pseudonym,
        sample_count=int(sample_count),
        created_at=(created_at or datetime.now(timezone.utc)).isoformat(),
        personal_sha256=hashlib.sha256(body).hexdigest(), counter=counter,
    )
    meta_bytes = json.dumps(asdict(meta), sort_keys=True).encode()
    return sealing.seal(struct.pack(">I", len(meta_bytes)) + meta_bytes + body, _check(key), MAGIC,
                        {"format_version": FORMAT_VERSION, "key_id": key_id})


def _check(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise BackupKeyError(f"the backup key must be 32 bytes (AES-256), got {got}")
    return bytes(key)


def read_header(blob: bytes) -> dict:
    """The unencrypted (but authenticated) header: format_version, key_id, alg."""
    try:
        header = sealing.read_header(blob, MAGIC)
    except sealing.NotSealed:
        raise BackupError("not a Tandem model backup") from None
    except sealing.SealError:
        raise TamperedBackup("backup header is unreadable (tampered or truncated)") from None
    if header.get("format_version") not in READABLE_VERSIONS:
        raise BackupError(f"unsupported backup format version {header.get('format_version')!r}")
    return header


def open_backup(blob: bytes, *, key: bytes, key_id: str | None = None, min_counter: int = 0) -> Restored:
    """Decrypt and authenticate; refuse a counter below ``min_counter`` (the highest the device has
    written or restored). No base compatibility check."""
    _check(key)
    header = read_header(blob)
    if key_id is not None and header.get("key_id") != key_id:
        raise BackupError(f"backup was sealed with key {header.get('key_id')!r}, not {key_id!r}")
    try:
        plain, _ = sealing.open_sealed(blob, _check(key), MAGIC)
    except sealing.SealError:
        raise TamperedBackup("backup failed authentication: it was altered or the key is wrong") from None
    if len(plain) < 4 or struct.unpack(">I", plain[:4])[0] > len(plain) - 4:
        raise MalformedBackup("backup metadata length runs past its end")
    (m,) = struct.unpack(">I", plain[:4])
    meta = BackupMetadata.from_json(plain[4:4 + m], header["format_version"])
    body = plain[4 + m:]
    if meta.personal_sha256 and hashlib.sha256(body).hexdigest() != meta.personal_sha256:
        raise TamperedBackup("personal model digest does not match its metadata")
    if meta.counter < min_counter:
        raise RolledBackBackup(f"backup counter {meta.counter} is older than {min_counter}, the newest this device "
                               "has written or restored: refusing to roll the personal model back")
    return Restored(_load_model(body, "backup payload"), meta)


def _load_model(body: bytes, what: str) -> DeviceModel:
    try:
        return DeviceModel.load(body)
    except (ModelError, DecodeError, ValueError) as exc:
        raise MalformedBackup(f"{what} is not a Core ML model ({type(exc).__name__})") from None


def restore_backup(blob: bytes, *, key: bytes, installed_base, key_id: str | None = None,
                   min_counter: int = 0) -> Restored:
    """Decrypt, authenticate and check the backup was trained from ``installed_base`` and is not older
    than ``min_counter``."""
    restored = open_backup(blob, key=key, key_id=key_id, min_counter=min_counter)
    installed = _sha(installed_base)
    if restored.metadata.base_sha256 != installed:
        raise IncompatibleBase(
            f"backup was trained from base {restored.metadata.base_version} "
            f"({restored.metadata.base_sha256[:12]}), installed base is {installed[:12]}")
    return restored


def reconcile(blob: bytes | None, *, key: bytes, new_base, X, y, key_id: str | None = None,
              min_counter: int = 0, **update_overrides) -> Reconciled:
    """After installing ``new_base``: restore the backup if it fits, else re-personalize ``new_base``
    on the local (X, y). A tampered backup still raises: that is a security event, not an upgrade."""
    if blob is not None:
        try:
            r = restore_backup(blob, key=key, installed_base=new_base, key_id=key_id, min_counter=min_counter)
            return Reconciled(r.model, True, "backup matches the installed base")
        except IncompatibleBase as e:
            reason = f"re-personalized: {e}"
    else:
        reason = "re-personalized: no backup"
    result = update(DeviceModel.load(new_base) if not isinstance(new_base, DeviceModel) else new_base,
                    X, y, **update_overrides)
    return Reconciled(result.model, False, reason, result.history)
