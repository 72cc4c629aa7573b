"""Rollback protection (issue 21): channel pointers are signed, `pull` verifies them and refuses a
version below the pinned minimum, so pointing a channel at an older, genuinely signed release is a
decision the server signs (`tandem rollback` / `promote`), not something a store writer can do."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.data.store import LocalStore, sha256_hex
from tandem.release import pointers, signing
from tandem.release.layout import IntegrityError, channel_key, pull, read_channel, set_channel, write_release

ROOT = Path(__file__).resolve().parents[1]
PRIVATE, PUBLIC = signing.generate()
SIGNER = signing.Signer(signing.load_private(PRIVATE))
TRUST = signing.TrustedKeys.of([signing.load_public(PUBLIC)])


def files(version: int) -> dict[str, bytes]:
    return {"model.mlmodel": b"\x08\x04model-v%d" % version, "feature_spec.json": b"{}"}


@pytest.fixture
def store(tmp_path) -> LocalStore:
    """Two genuinely signed releases, staging on the newer."""
    store = LocalStore(tmp_path / "store")
    for version in (1, 2):
        write_release(store, "m", version, files(version), {}, signer=SIGNER)
    set_channel(store, "m", "staging", 1, signer=SIGNER)
    set_channel(store, "m", "staging", 2, signer=SIGNER)
    return store


def test_the_signed_bytes_are_the_documented_canonical_json(store):
    pointer = read_channel(store, "m", "staging")
    expected = ('{"channel":"staging","issued_at":"%s","manifest_sha256":"%s","model":"m","version":"2"}'
                % (pointer["issued_at"], pointer["manifest_sha256"])).encode()
    assert pointers.canonical_bytes(pointer) == expected
    raw = base64.b64decode(pointer["signature"]["signature"])
    signing.load_public(PUBLIC).verify(raw, expected)  # what TandemKit verifies, with nothing but Ed25519
    assert pointer["signature"]["key_id"] == SIGNER.key_id and pointer["issued_at"].endswith("Z")


def test_a_store_writer_cannot_point_a_channel_at_an_older_signed_release(store, tmp_path):
    pointer = read_channel(store, "m", "staging")
    older = {**pointer, "version": "1", "manifest": "releases/m/1/manifest.json",
             "manifest_sha256": sha256_hex(store.get("releases/m/1/manifest.json"))}
    store.put(channel_key("m", "staging"), json.dumps(older).encode())
    with pytest.raises(IntegrityError, match="does not verify"):
        pull(store, "m", tmp_path / "out", TRUST, channel="staging")
    assert not (tmp_path / "out").exists()


def test_a_replayed_old_pointer_verifies_but_the_pinned_minimum_refuses_it(store, tmp_path):
    current = store.get(channel_key("m", "staging"))
    set_channel(store, "m", "staging", 1, signer=SIGNER)  # an old, genuinely signed pointer an attacker kept
    old = store.get(channel_key("m", "staging"))
    store.put(channel_key("m", "staging"), old)
    assert pull(store, "m", tmp_path / "any", TRUST, channel="staging")["version"] == "1"  # signature alone holds
    with pytest.raises(IntegrityError, match="below the minimum 2"):
        pull(store, "m", tmp_path / "pinned", TRUST, channel="staging", min_version=2)
    with pytest.raises(IntegrityError, match="below the minimum 2"):
        pull(store, "m", tmp_path / "by-version", TRUST, channel=None, version=1, min_version=2)
    assert not (tmp_path / "pinned").exists() and not (tmp_path / "by-version").exists()
    store.put(channel_key("m", "staging"), current)
    assert pull(store, "m", tmp_path / "now", TRUST, channel="staging", min_version=2)["version"] == "2"


def test_unsigned_foreign_and_copied_pointers_are_refused(store, tmp_path):
    pointer = read_channel(store, "m", "staging")
    unsigned = {k: v for k, v in pointer.items() if k != "signature"}
    store.put(channel_key("m", "staging"), json.dumps(unsigned).encode())
    with pytest.raises(IntegrityError, match="not signed"):
        pull(store, "m", tmp_path / "a", TRUST, channel="staging")
    other = signing.Signer(signing.load_private(signing.generate()[0]))
    store.put(channel_key("m", "staging"), json.dumps(pointers.sign(unsigned, other)).encode())
    with pytest.raises(IntegrityError, match="not pinned"):
        pull(store, "m", tmp_path / "b", TRUST, channel="staging")
    store.put(channel_key("m", "production"), json.dumps(pointer).encode())  # staging's pointer copied
    with pytest.raises(IntegrityError, match="signed for m's channel 'staging'"):
        pull(store, "m", tmp_path / "c", TRUST, channel="production")


# ---- through the real CLI, as an app build and an operator run it

def tandem(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(home), "TANDEM_SIGNING_KEY": PRIVATE,
                   "TANDEM_RELEASE_PUBLIC_KEYS": PUBLIC, **env}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "TANDEM_MODEL_NAME",
                "TANDEM_MIN_RELEASE_VERSION"):
        if var not in env:
            environment.pop(var, None)
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT)


def one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def test_the_cli_pins_a_minimum_and_refuses_pointers_it_cannot_trust(tmp_path):
    home = tmp_path / "home"
    store = LocalStore(home / "store")
    model = "tandem-har"
    for version in (1, 2):
        write_release(store, model, version, files(version), {}, signer=SIGNER)
    set_channel(store, model, "staging", 1, signer=SIGNER)  # e.g. after a decided rollback to 1
    one_line(tandem(home, "pull", "--out", str(tmp_path / "a"), "--min-version", "2"), "below the minimum 2")
    one_line(tandem(home, "pull", "--out", str(tmp_path / "b"), TANDEM_MIN_RELEASE_VERSION="2"), "below the minimum 2")
    done = tandem(home, "pull", "--out", str(tmp_path / "c"), "--min-version", "1")
    assert done.returncode == 0 and (tmp_path / "c" / "model.mlmodel").read_bytes() == files(1)["model.mlmodel"], done.stderr
    (tmp_path / "file").write_text("x")
    one_line(tandem(home, "pull", "--out", str(tmp_path / "file")), "is a file")
    store.put(channel_key(model, "staging"), b"{not json")
    one_line(tandem(home, "pull", "--out", str(tmp_path / "d")), "not a JSON object", "staging")
    one_line(tandem(home, "releases"), "not a JSON object")


def test_promote_and_rollback_that_cannot_happen_exit_non_zero(tmp_path):
    home = tmp_path / "home"
    one_line(tandem(home, "promote", "--version", "42"), "no complete release")
    one_line(tandem(home, "rollback"), "no previous version")
    one_line(tandem(home, "promote"), "nothing on staging")
    one_line(tandem(home, "promote", "--version", "1", TANDEM_SIGNING_KEY=""), "TANDEM_SIGNING_KEY")
