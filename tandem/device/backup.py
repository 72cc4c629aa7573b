"""Encrypted backup of a personal model, and what to do with it after a base-model upgrade.

The container is Tandem's one sealed format (``tandem.contract.sealing``, magic ``TNDB``): the header
(format version, key id, algorithm) is authenticated but readable before decrypting. The plaintext
is u32 metadata length | metadata JSON | personal .mlmodel bytes.

A personal model only makes sense on top of the base it was trained from: restoring checks the
base's sha256 and raises ``IncompatibleBase`` otherwise, so the app re-personalizes the new base
from the data it keeps on the device (``reconcile``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from tandem.contract import sealing
from tandem.device.runtime import DeviceModel
from tandem.device.update import update

MAGIC = b"TNDB"
FORMAT_VERSION = 2  # 2: the shared container (1 had no version byte)
ALGORITHM = sealing.ALGORITHM


class BackupError(Exception):
    """The backup cannot be used."""


class TamperedBackup(BackupError):
    """Authentication failed: the bytes were altered, or the key is not the one that sealed them."""


class IncompatibleBase(BackupError):
    """The backup's personal model was trained from another base than the installed one."""


@dataclass(frozen=True)
class BackupMetadata:
    base_version: str
    base_sha256: str
    pseudonym: str
    sample_count: int
    created_at: str  # ISO 8601, UTC
    personal_sha256: str = ""


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
                  key: bytes, key_id: str, created_at: datetime | None = None) -> bytes:
    """Seal ``personal`` (DeviceModel or .mlmodel bytes) trained from ``base`` (DeviceModel or bytes)."""
    body = personal.to_bytes() if isinstance(personal, DeviceModel) else bytes(personal)
    meta = BackupMetadata(
        base_version=str(base_version), base_sha256=_sha(base), pseudonym=pseudonym,
        sample_count=int(sample_count),
        created_at=(created_at or datetime.now(timezone.utc)).isoformat(),
        personal_sha256=hashlib.sha256(body).hexdigest(),
    )
    meta_bytes = json.dumps(asdict(meta), sort_keys=True).encode()
    return sealing.seal(struct.pack(">I", len(meta_bytes)) + meta_bytes + body, _check(key), MAGIC,
                        {"format_version": FORMAT_VERSION, "key_id": key_id})


def _check(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise ValueError("the backup key must be 32 bytes (AES-256)")
    return bytes(key)


def read_header(blob: bytes) -> dict:
    """The unencrypted (but authenticated) header: format_version, key_id, alg."""
    try:
        header = sealing.read_header(blob, MAGIC)
    except sealing.NotSealed:
        raise BackupError("not a Tandem model backup") from None
    except sealing.SealError:
        raise TamperedBackup("backup header is unreadable (tampered or truncated)") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"unsupported backup format version {header.get('format_version')!r}")
    return header


def open_backup(blob: bytes, *, key: bytes, key_id: str | None = None) -> Restored:
    """Decrypt and authenticate; no compatibility check."""
    header = read_header(blob)
    if key_id is not None and header.get("key_id") != key_id:
        raise BackupError(f"backup was sealed with key {header.get('key_id')!r}, not {key_id!r}")
    try:
        plain, _ = sealing.open_sealed(blob, _check(key), MAGIC)
    except sealing.SealError:
        raise TamperedBackup("backup failed authentication: it was altered or the key is wrong") from None
    (m,) = struct.unpack(">I", plain[:4])
    meta = BackupMetadata(**json.loads(plain[4:4 + m]))
    body = plain[4 + m:]
    if meta.personal_sha256 and hashlib.sha256(body).hexdigest() != meta.personal_sha256:
        raise TamperedBackup("personal model digest does not match its metadata")
    return Restored(DeviceModel.load(body), meta)


def restore_backup(blob: bytes, *, key: bytes, installed_base, key_id: str | None = None) -> Restored:
    """Decrypt, authenticate and check the backup was trained from ``installed_base``."""
    restored = open_backup(blob, key=key, key_id=key_id)
    installed = _sha(installed_base)
    if restored.metadata.base_sha256 != installed:
        raise IncompatibleBase(
            f"backup was trained from base {restored.metadata.base_version} "
            f"({restored.metadata.base_sha256[:12]}), installed base is {installed[:12]}")
    return restored


def reconcile(blob: bytes | None, *, key: bytes, new_base, X, y, key_id: str | None = None,
              **update_overrides) -> Reconciled:
    """After installing ``new_base``: restore the backup if it fits, else re-personalize ``new_base``
    on the local (X, y). A tampered backup still raises: that is a security event, not an upgrade."""
    if blob is not None:
        try:
            r = restore_backup(blob, key=key, installed_base=new_base, key_id=key_id)
            return Reconciled(r.model, True, "backup matches the installed base")
        except IncompatibleBase as e:
            reason = f"re-personalized: {e}"
    else:
        reason = "re-personalized: no backup"
    result = update(DeviceModel.load(new_base) if not isinstance(new_base, DeviceModel) else new_base,
                    X, y, **update_overrides)
    return Reconciled(result.model, False, reason, result.history)
