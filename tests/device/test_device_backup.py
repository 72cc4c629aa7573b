"""Encrypted personal-model backups: roundtrip, tamper rejection, base upgrades, key length,
malformed contents, unknown metadata fields, the monotonic counter (rollback) and format 2."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np
import pytest
from device_builders import LABELS, D, classifier_spec, random_weights

from tandem.contract import sealing
from tandem.device.backup import (
    MAGIC,
    BackupError,
    BackupKeyError,
    IncompatibleBase,
    MalformedBackup,
    RolledBackBackup,
    TamperedBackup,
    create_backup,
    open_backup,
    read_header,
    reconcile,
    restore_backup,
)
from tandem.device.runtime import DeviceModel
from tandem.device.update import update

KEY = bytes(range(32))
PSEUDONYM = "a" * 64


@pytest.fixture(scope="module")
def setup():
    w = random_weights(0)
    rng = np.random.default_rng(0)
    X = w["mean"] + w["std"] * rng.normal(size=(48, D))
    y = np.asarray(LABELS)[rng.integers(0, 6, 48)]
    base = DeviceModel.load(classifier_spec(w=w).SerializeToString())
    personal = update(base, X, y, epochs=3).model
    blob = create_backup(personal, base=base, base_version="1.4.0", pseudonym=PSEUDONYM,
                         sample_count=len(X), key=KEY, key_id="device-key-1")
    return base, personal, blob, X, y


def test_roundtrip(setup):
    base, personal, blob, X, y = setup
    assert read_header(blob) == {"format_version": 3, "key_id": "device-key-1", "alg": "AES-256-GCM"}
    r = restore_backup(blob, key=KEY, installed_base=base.to_bytes(), key_id="device-key-1")
    assert r.model.sha256 == personal.sha256
    np.testing.assert_array_equal(r.model.predict_proba(X), personal.predict_proba(X))
    m = r.metadata
    assert (m.base_version, m.base_sha256, m.pseudonym, m.sample_count, m.counter) == ("1.4.0", base.sha256, PSEUDONYM, 48, 0)
    assert m.created_at.endswith("+00:00")
    assert PSEUDONYM.encode() not in blob  # metadata is encrypted too


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag"])
def test_tampering_is_refused(setup, where):
    base, _, blob, _, _ = setup
    b = bytearray(blob)
    n = 6 + int.from_bytes(blob[4:6], "big")
    pos = {"header": n - 3, "nonce": n + 2, "ciphertext": n + 40, "tag": len(b) - 1}[where]
    b[pos] ^= 0x01
    with pytest.raises((TamperedBackup, BackupError)):
        restore_backup(bytes(b), key=KEY, installed_base=base)


def test_header_key_id_swap_is_refused(setup):
    base, _, blob, _, _ = setup
    forged = blob.replace(b"device-key-1", b"device-key-2")
    assert read_header(forged)["key_id"] == "device-key-2"
    with pytest.raises(TamperedBackup):
        restore_backup(forged, key=KEY, installed_base=base)


def test_wrong_key_and_truncation(setup):
    base, _, blob, _, _ = setup
    with pytest.raises(TamperedBackup):
        open_backup(blob, key=os.urandom(32))
    with pytest.raises(TamperedBackup):
        open_backup(blob[:-5], key=KEY)
    with pytest.raises(BackupError, match="not a Tandem"):
        open_backup(b"garbage", key=KEY)
    with pytest.raises(BackupError, match="key"):
        open_backup(blob, key=KEY, key_id="other")
    with pytest.raises(ValueError, match="32 bytes"):
        open_backup(blob, key=b"short")


def test_incompatible_base_then_reconcile(setup):
    base, personal, blob, X, y = setup
    new_base = DeviceModel.load(classifier_spec(w=random_weights(9)).SerializeToString())
    with pytest.raises(IncompatibleBase, match="1.4.0"):
        restore_backup(blob, key=KEY, installed_base=new_base)
    same = reconcile(blob, key=KEY, new_base=base, X=X, y=y)
    assert same.restored and same.model.sha256 == personal.sha256
    fresh = reconcile(blob, key=KEY, new_base=new_base, X=X, y=y, epochs=3)
    assert not fresh.restored and "re-personalized" in fresh.reason and len(fresh.history) == 3
    # the re-personalized model starts from the new base, not from the old personal model
    direct = update(new_base, X, y, epochs=3).model
    np.testing.assert_allclose(fresh.model.predict_proba(X), direct.predict_proba(X))
    with pytest.raises(TamperedBackup):
        reconcile(blob[:-1] + bytes([blob[-1] ^ 1]), key=KEY, new_base=base, X=X, y=y)


def _sealed(plain: bytes, format_version: int = 3) -> bytes:
    """An authentic container (right key) around hand-made plaintext: what a buggy or newer app could write."""
    return sealing.seal(plain, KEY, MAGIC, {"format_version": format_version, "key_id": "device-key-1"})


def _plain(meta: dict, body: bytes) -> bytes:
    raw = json.dumps(meta).encode()
    return struct.pack(">I", len(raw)) + raw + body


def _meta(base, body: bytes, **extra) -> dict:
    return {"base_version": "1.4.0", "base_sha256": base.sha256, "pseudonym": PSEUDONYM, "sample_count": 48,
            "created_at": "2026-12-03T00:00:00+00:00", "personal_sha256": hashlib.sha256(body).hexdigest(),
            "counter": 1, **extra}


def test_sixteen_byte_key_is_refused_on_create_and_open(setup):
    base, personal, blob, _, _ = setup
    with pytest.raises(BackupKeyError, match="32 bytes"):
        create_backup(personal, base=base, base_version="1", pseudonym=PSEUDONYM, sample_count=1,
                      key=os.urandom(16), key_id="k")
    with pytest.raises(BackupKeyError, match="got 16 bytes"):
        restore_backup(blob, key=KEY[:16], installed_base=base)


@pytest.mark.parametrize("case", ["not json", "not an object", "missing field", "wrong type", "length past end",
                                  "no counter in format 3", "negative counter"])
def test_malformed_metadata_is_a_backup_error(setup, case):
    base, personal, _, _, _ = setup
    body = personal.to_bytes()
    meta = _meta(base, body)
    plain = {
        "not json": struct.pack(">I", 5) + b"{nope" + body,
        "not an object": _plain([1, 2], body),  # type: ignore[arg-type]
        "missing field": _plain({k: v for k, v in meta.items() if k != "base_sha256"}, body),
        "wrong type": _plain({**meta, "sample_count": "48"}, body),
        "length past end": struct.pack(">I", 10**6) + b"{}",
        "no counter in format 3": _plain({k: v for k, v in meta.items() if k != "counter"}, body),
        "negative counter": _plain({**meta, "counter": -1}, body),
    }[case]
    with pytest.raises(MalformedBackup):
        restore_backup(_sealed(plain), key=KEY, installed_base=base)


def test_payload_that_is_not_a_core_ml_model_is_a_backup_error(setup):
    base, _, _, _, _ = setup
    for body in (b"\xff\xff\xff garbage", b"\x08\x04"):  # undecodable; decodable but no model type
        with pytest.raises(MalformedBackup, match="not a Core ML model"):
            restore_backup(_sealed(_plain(_meta(base, body), body)), key=KEY, installed_base=base)
        with pytest.raises(MalformedBackup, match="not a Core ML model"):  # and none is ever written
            create_backup(body, base=base, base_version="1", pseudonym=PSEUDONYM, sample_count=1, key=KEY, key_id="k")


def test_unknown_metadata_fields_of_a_newer_app_are_ignored(setup):
    base, personal, _, _, _ = setup
    body = personal.to_bytes()
    blob = _sealed(_plain(_meta(base, body, counter=4, device_class="iPhone17,1", ledger={"epsilon": 1.5}), body))
    r = restore_backup(blob, key=KEY, installed_base=base)
    assert r.model.sha256 == personal.sha256 and r.metadata.counter == 4


def test_rollback_to_an_older_genuine_backup_is_refused(setup):
    base, personal, _, X, y = setup
    older = create_backup(personal, base=base, base_version="1.4.0", pseudonym=PSEUDONYM, sample_count=48,
                          key=KEY, key_id="device-key-1", counter=6)
    newer = create_backup(personal, base=base, base_version="1.4.0", pseudonym=PSEUDONYM, sample_count=48,
                          key=KEY, key_id="device-key-1", counter=7)
    assert restore_backup(newer, key=KEY, installed_base=base, min_counter=7).metadata.counter == 7
    with pytest.raises(RolledBackBackup, match="counter 6 is older than 7"):
        restore_backup(older, key=KEY, installed_base=base, min_counter=7)
    with pytest.raises(RolledBackBackup):  # a rollback is a security event, not a reason to re-personalize
        reconcile(older, key=KEY, new_base=base, X=X, y=y, min_counter=7)
    with pytest.raises(BackupError, match="non-negative"):
        create_backup(personal, base=base, base_version="1", pseudonym=PSEUDONYM, sample_count=1, key=KEY,
                      key_id="k", counter=-1)


def test_format_2_backups_stay_readable_as_counter_zero(setup):
    base, personal, _, _, _ = setup
    body = personal.to_bytes()
    meta = {k: v for k, v in _meta(base, body).items() if k != "counter"}
    old = _sealed(_plain(meta, body), format_version=2)
    r = restore_backup(old, key=KEY, installed_base=base)
    assert r.metadata.counter == 0 and r.model.sha256 == personal.sha256
    with pytest.raises(RolledBackBackup):
        restore_backup(old, key=KEY, installed_base=base, min_counter=1)
    with pytest.raises(BackupError, match="unsupported backup format version 9"):
        restore_backup(_sealed(_plain(meta, body), format_version=9), key=KEY, installed_base=base)


def test_hostile_bytes_are_backup_errors(setup):
    """Every truncation and seeded random mutations end in a BackupError: never struct.error,
    TypeError or DecodeError, and never a success."""
    base, _, blob, _, _ = setup
    for n in range(0, len(blob), 97):
        with pytest.raises(BackupError):
            restore_backup(blob[:n], key=KEY, installed_base=base)
    rng = np.random.default_rng(20)
    for _ in range(300):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), size=rng.integers(1, 5)):
            bad[pos] = int(rng.integers(0, 256))
        if bytes(bad) != blob:
            with pytest.raises(BackupError):
                restore_backup(bytes(bad), key=KEY, installed_base=base)
    for _ in range(100):
        with pytest.raises(BackupError):
            restore_backup(MAGIC + rng.bytes(int(rng.integers(0, 200))), key=KEY, installed_base=base)
