"""Releases are immutable and checksummed; pull verifies everything and writes nothing on a mismatch."""

from __future__ import annotations

import json

import pytest

from tandem.data.store import LocalStore, open_store, sha256_hex
from tandem.release import signing
from tandem.release.layout import (
    IntegrityError,
    ReleaseError,
    list_releases,
    pull,
    read_channel,
    release_prefix,
    set_channel,
    write_release,
)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(f"s3://{request.getfixturevalue('s3_bucket')}/rel", request.getfixturevalue("s3_endpoint"))


PRIVATE, PUBLIC = signing.generate()
SIGNER = signing.Signer(signing.load_private(PRIVATE))
TRUST = signing.TrustedKeys.of([signing.load_public(PUBLIC)])
FILES = {"model.mlmodel": b"\x08\x04fake-model-bytes", "feature_spec.json": b'{"version": 1}'}


def test_release_manifest_names_every_file_with_checksum(store):
    manifest = write_release(store, "m", 1, FILES, {"metrics": {"accuracy": 0.9}})
    assert manifest["files"]["model.mlmodel"] == {"sha256": sha256_hex(FILES["model.mlmodel"]), "size": len(FILES["model.mlmodel"])}
    assert json.loads(store.get(release_prefix("m", 1) + "manifest.json")) == manifest
    assert [m["version"] for m in list_releases(store, "m")] == ["1"]


def test_a_manifest_is_strict_json_a_phone_can_parse(tmp_path):
    # a gate's "not measured" is NaN in Python (a phone that kept its base has no loss after the update);
    # Foundation's JSON parser refuses NaN, so the manifest says null
    store = LocalStore(tmp_path / "store")
    fields = {"gates": {"update": {"per_user": {"eval-00": {"loss_after": float("nan"), "before": 0.9}},
                                   "worst": float("-inf"), "gains": [1.0, float("nan")]}}}
    write_release(store, "m", 1, FILES, fields, signer=SIGNER)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    manifest = json.loads(store.get(release_prefix("m", 1) + "manifest.json"), parse_constant=refuse)
    update = manifest["gates"]["update"]
    assert update["per_user"]["eval-00"] == {"loss_after": None, "before": 0.9}
    assert update["worst"] is None and update["gains"] == [1.0, None]


def test_published_release_cannot_be_rewritten(store):
    write_release(store, "m", 1, FILES, {}, signer=SIGNER)
    with pytest.raises(ReleaseError):
        write_release(store, "m", 1, {**FILES, "model.mlmodel": b"other"}, {})


def test_release_without_manifest_is_invisible(store):
    store.put(release_prefix("m", 2) + "model.mlmodel", b"half-written")
    assert list_releases(store, "m") == []


def test_channel_moves_and_remembers_history(store):
    write_release(store, "m", 1, FILES, {}, signer=SIGNER)
    write_release(store, "m", 2, {**FILES, "model.mlmodel": b"v2"}, {})
    set_channel(store, "m", "staging", 1)
    pointer = set_channel(store, "m", "staging", 2)
    assert pointer["version"] == "2" and pointer["history"] == ["1"]
    assert read_channel(store, "m", "staging")["version"] == "2"


def test_pull_verifies_and_writes_all_files(store, tmp_path):
    write_release(store, "m", 1, FILES, {}, signer=SIGNER)
    set_channel(store, "m", "staging", 1, signer=SIGNER)
    out = tmp_path / "app" / "model"
    manifest = pull(store, "m", out, TRUST, channel="staging")
    assert (out / "model.mlmodel").read_bytes() == FILES["model.mlmodel"]
    assert sha256_hex((out / "model.mlmodel").read_bytes()) == manifest["files"]["model.mlmodel"]["sha256"]
    assert (out / "manifest.json").exists()


def test_pull_refuses_a_tampered_file_and_writes_nothing(store, tmp_path):
    write_release(store, "m", 1, FILES, {}, signer=SIGNER)
    set_channel(store, "m", "staging", 1, signer=SIGNER)
    store.put(release_prefix("m", 1) + "model.mlmodel", b"tampered!")  # an attacker or a bad copy
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="model.mlmodel"):
        pull(store, "m", out, TRUST, channel="staging")
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pull-")]


def test_pull_of_an_empty_channel_says_so(store, tmp_path):
    with pytest.raises(ReleaseError, match="points to no release"):
        pull(store, "m", tmp_path / "out", TRUST, channel="production")
