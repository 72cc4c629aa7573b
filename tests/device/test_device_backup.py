"""Encrypted personal-model backups: roundtrip, tamper rejection, base upgrades."""

from __future__ import annotations

import os

import numpy as np
import pytest
from device_builders import LABELS, D, classifier_spec, random_weights

from tandem.device.backup import (
    BackupError,
    IncompatibleBase,
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
    assert read_header(blob) == {"format_version": 2, "key_id": "device-key-1", "alg": "AES-256-GCM"}
    r = restore_backup(blob, key=KEY, installed_base=base.to_bytes(), key_id="device-key-1")
    assert r.model.sha256 == personal.sha256
    np.testing.assert_array_equal(r.model.predict_proba(X), personal.predict_proba(X))
    m = r.metadata
    assert (m.base_version, m.base_sha256, m.pseudonym, m.sample_count) == ("1.4.0", base.sha256, PSEUDONYM, 48)
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
