"""TandemSecurity (Swift) against the server's Python, both directions at test time through the two
command lines: pseudonyms, the sealed container, personal-model backups (key length, rollback) and
the release check of `tandem-device pull` against releases written and signed by Tandem's own
publish code (`write_release` + signed channel pointers), from a store folder and from the gateway."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tandem.contract import sealing as container
from tandem.data.store import LocalStore
from tandem.device import backup
from tandem.device.proto import Model_pb2
from tandem.privacy import sealing
from tandem.privacy.pseudonyms import pseudonymize
from tandem.release import signing
from tandem.release.layout import channel_key, release_prefix, set_channel, write_release
from tandem.settings import Settings

SEAL_KEY = bytes(range(32))
BACKUP_KEY = bytes(range(100, 132))


def device(binary, *args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """tandem-device with only the environment a test gives it (plus PATH)."""
    done = subprocess.run([str(binary), *args], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **(env or {})})
    if check and done.returncode != 0:
        pytest.fail(f"tandem-device {args[0]} exited {done.returncode}: {done.stderr.strip()}", pytrace=False)
    return done


def mlmodel(name: str) -> bytes:
    """A small, genuine Core ML Model protobuf (spec version 4, a regressor) the device runtime loads."""
    spec = Model_pb2.Model(specificationVersion=4)
    spec.description.metadata.shortDescription = name
    layer = spec.neuralNetworkRegressor.layers.add(name="dense", input=["x"], output=["y"])
    layer.innerProduct.inputChannels, layer.innerProduct.outputChannels = 1, 1
    layer.innerProduct.weights.floatValue.append(0.5)
    return spec.SerializeToString()


# ---- pseudonyms and the sealed container ----

def test_pseudonyms_are_byte_identical(tandem_device):
    key = "a devices' pseudonym key ✓"
    ids = ["hapt-user-05", "Zoë 用户", "x" * 300, "device/42|x"]
    out = device(tandem_device, "pseudonym", *ids, env={"TANDEM_PSEUDONYM_KEY": key}).stdout.split()
    assert out == [pseudonymize(i, key.encode()) for i in ids]
    missing = device(tandem_device, "pseudonym", "u", check=False)
    assert missing.returncode != 0 and "TANDEM_PSEUDONYM_KEY" in missing.stderr


def test_swift_seals_python_opens_and_a_flipped_byte_is_refused(tandem_device, tmp_path):
    plain = os.urandom(5000)
    (tmp_path / "batch.parquet").write_bytes(plain)
    device(tandem_device, "seal", "--in", str(tmp_path / "batch.parquet"), "--out", str(tmp_path / "batch.sealed"),
           "--key-id", "e7", env={"TANDEM_ENCRYPTION_KEY": SEAL_KEY.hex()})
    sealed = (tmp_path / "batch.sealed").read_bytes()
    opened, header = sealing.open_sealed(sealed, {"e7": SEAL_KEY})
    assert opened == plain and header == {"alg": "AES-256-GCM", "key_id": "e7", "content": sealing.PARQUET}
    for pos in (5, len(sealed) // 2, len(sealed) - 1):  # header, ciphertext, tag
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        with pytest.raises(sealing.EnvelopeError):
            sealing.open_sealed(bytes(bad), {"e7": SEAL_KEY})


def test_python_seals_swift_opens_and_a_flipped_byte_is_refused(tandem_device, tmp_path):
    plain = os.urandom(3000)
    sealed = sealing.seal(plain, SEAL_KEY, "e1")
    (tmp_path / "in.sealed").write_bytes(sealed)
    env = {"TANDEM_ENCRYPTION_KEY": SEAL_KEY.hex()}
    device(tandem_device, "open", "--in", str(tmp_path / "in.sealed"), "--out", str(tmp_path / "out.bin"), env=env)
    assert (tmp_path / "out.bin").read_bytes() == plain
    for pos in (9, 40, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        (tmp_path / "bad.sealed").write_bytes(bytes(bad))
        done = device(tandem_device, "open", "--in", str(tmp_path / "bad.sealed"), "--out", str(tmp_path / "bad.out"),
                      env=env, check=False)
        assert done.returncode != 0 and not (tmp_path / "bad.out").exists()
        assert len(done.stderr.strip().splitlines()) == 1
    other = device(tandem_device, "open", "--in", str(tmp_path / "in.sealed"), "--out", str(tmp_path / "x"),
                   env={"TANDEM_ENCRYPTION_KEY": os.urandom(32).hex()}, check=False)
    assert other.returncode != 0 and "failed authentication" in other.stderr


# ---- backups ----

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("base", "personal", "other_base"):
        paths[name] = folder / f"{name}.mlmodel"
        paths[name].write_bytes(mlmodel(name))
    return paths


def swift_backup(binary, models, out, *extra, key=BACKUP_KEY, check=True):
    return device(binary, "backup", "--personal", str(models["personal"]), "--base", str(models["base"]),
                  "--base-version", "3", "--pseudonym", "a" * 64, "--sample-count", "12", "--key-id", "dev-1",
                  "--out", str(out), *extra, env={"TANDEM_BACKUP_KEY": key.hex()}, check=check)


def swift_restore(binary, models, blob, out, *extra, key=BACKUP_KEY, base="base"):
    return device(binary, "restore", "--backup", str(blob), "--base", str(models[base]), "--out", str(out), *extra,
                  env={"TANDEM_BACKUP_KEY": key.hex()}, check=False)


def test_swift_backup_restores_in_python(tandem_device, models, tmp_path):
    state = tmp_path / "state.json"
    for _ in range(2):  # the state's counter grows with each backup
        swift_backup(tandem_device, models, tmp_path / "b.tndb", "--state", str(state))
    assert json.loads(state.read_text()) == {"backup_counter": 2}
    r = backup.restore_backup((tmp_path / "b.tndb").read_bytes(), key=BACKUP_KEY,
                              installed_base=models["base"].read_bytes(), key_id="dev-1", min_counter=2)
    assert r.model.to_bytes() == models["personal"].read_bytes()
    assert (r.metadata.counter, r.metadata.base_version, r.metadata.sample_count) == (2, "3", 12)
    assert r.metadata.base_sha256 == hashlib.sha256(models["base"].read_bytes()).hexdigest()
    with pytest.raises(backup.RolledBackBackup):
        backup.restore_backup((tmp_path / "b.tndb").read_bytes(), key=BACKUP_KEY,
                              installed_base=models["base"].read_bytes(), min_counter=3)
    with pytest.raises(backup.IncompatibleBase):
        backup.restore_backup((tmp_path / "b.tndb").read_bytes(), key=BACKUP_KEY,
                              installed_base=models["other_base"].read_bytes())


def test_python_backup_restores_in_swift_and_rollback_is_refused(tandem_device, models, tmp_path):
    def make(counter):
        blob = backup.create_backup(models["personal"].read_bytes(), base=models["base"].read_bytes(), base_version="3",
                                    pseudonym="b" * 64, sample_count=9, key=BACKUP_KEY, key_id="dev-1", counter=counter)
        (tmp_path / f"{counter}.tndb").write_bytes(blob)
        return tmp_path / f"{counter}.tndb"

    older, newer = make(4), make(5)
    state = tmp_path / "state.json"
    done = swift_restore(tandem_device, models, newer, tmp_path / "p.mlmodel", "--state", str(state), "--key-id", "dev-1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.mlmodel").read_bytes() == models["personal"].read_bytes()
    assert json.loads(state.read_text()) == {"backup_counter": 5}
    rolled = swift_restore(tandem_device, models, older, tmp_path / "q.mlmodel", "--state", str(state))
    assert rolled.returncode != 0 and "counter 4 is older than 5" in rolled.stderr
    assert not (tmp_path / "q.mlmodel").exists()
    other = swift_restore(tandem_device, models, newer, tmp_path / "r.mlmodel", base="other_base")
    assert other.returncode != 0 and "trained from base 3" in other.stderr
    bad = bytearray(newer.read_bytes())
    bad[-3] ^= 0x01
    (tmp_path / "bad.tndb").write_bytes(bytes(bad))
    tampered = swift_restore(tandem_device, models, tmp_path / "bad.tndb", tmp_path / "s.mlmodel")
    assert tampered.returncode != 0 and "authentication" in tampered.stderr


def test_sixteen_byte_backup_key_is_refused_on_both_sides(tandem_device, models, tmp_path):
    short = os.urandom(16)
    made = swift_backup(tandem_device, models, tmp_path / "b.tndb", "--counter", "1", key=short, check=False)
    assert made.returncode != 0 and "32 bytes" in made.stderr and not (tmp_path / "b.tndb").exists()
    swift_backup(tandem_device, models, tmp_path / "b.tndb", "--counter", "1")
    opened = swift_restore(tandem_device, models, tmp_path / "b.tndb", tmp_path / "p.mlmodel", key=BACKUP_KEY[:16])
    assert opened.returncode != 0 and "32 bytes" in opened.stderr
    with pytest.raises(backup.BackupKeyError, match="32 bytes"):
        backup.restore_backup((tmp_path / "b.tndb").read_bytes(), key=BACKUP_KEY[:16],
                              installed_base=models["base"].read_bytes())


def test_authentic_backup_with_bad_contents_is_refused_by_swift(tandem_device, models, tmp_path):
    def authentic(meta: dict, body: bytes) -> str:
        raw = json.dumps(meta).encode()
        blob = container.seal(len(raw).to_bytes(4, "big") + raw + body, BACKUP_KEY, backup.MAGIC,
                              {"format_version": 3, "key_id": "dev-1"})
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.tndb"
        path.write_bytes(blob)
        return str(path)

    base = hashlib.sha256(models["base"].read_bytes()).hexdigest()
    meta = {"base_version": "3", "base_sha256": base, "pseudonym": "c" * 64, "sample_count": 1,
            "created_at": "2026-12-03T00:00:00+00:00", "counter": 2}
    junk = b"\xff\xfe not a model"
    cases = {
        "payload is not a Core ML model": authentic({**meta, "personal_sha256": hashlib.sha256(junk).hexdigest()}, junk),
        "lacks 'base_sha256'": authentic({k: v for k, v in meta.items() if k != "base_sha256"}, models["personal"].read_bytes()),
        "wrong type": authentic({**meta, "counter": "2"}, models["personal"].read_bytes()),
    }
    for expected, path in cases.items():
        done = swift_restore(tandem_device, models, path, tmp_path / "p.mlmodel")
        assert done.returncode != 0 and expected in done.stderr, (expected, done.stderr)
    newer = authentic({**meta, "personal_sha256": hashlib.sha256(models["personal"].read_bytes()).hexdigest(),
                       "written_by": "app 9.0", "ledger": {"epsilon": 1.0}}, models["personal"].read_bytes())
    done = swift_restore(tandem_device, models, newer, tmp_path / "p.mlmodel")
    assert done.returncode == 0, done.stderr  # a newer app's extra metadata fields are ignored


# ---- releases ----

@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Two releases written and signed by Tandem's publish code, `staging` signed at version 2."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    store = LocalStore(home / "store")
    private, public = signing.generate()
    signer = signing.Signer(signing.load_private(private))
    for version in (1, 2):
        files = {"model.mlmodel": mlmodel(f"v{version}"), "feature_spec.json": json.dumps({"v": version}).encode()}
        write_release(store, settings.model_name, version, files, {"metrics": {"accuracy": 0.9}}, signer=signer)
    set_channel(store, settings.model_name, "staging", 2, signer=signer)
    keyfile = home / "release-public-key.txt"
    keyfile.write_text(public + "\n")
    return {"home": home, "settings": settings, "store": store, "signer": signer, "public": public, "keyfile": keyfile,
            "model": settings.model_name}


def pull(binary, published, out, *extra, check=False):
    return device(binary, "pull", "--store", str(published["store"].root), "--public-key", str(published["keyfile"]),
                  "--out", str(out), *extra, check=check)


def test_swift_pull_verifies_a_release_as_tandem_pull_does(tandem_device, published, tmp_path):
    done = pull(tandem_device, published, tmp_path / "swift", "--channel", "staging", "--min-version", "2", check=True)
    assert "version 2" in done.stdout and "signature by ed25519:" in done.stdout
    py = subprocess.run([sys.executable, "-m", "tandem.cli.main", "pull", "--channel", "staging", "--out",
                         str(tmp_path / "python"), "--public-key", str(published["keyfile"])],
                        capture_output=True, text=True, env={**os.environ, "TANDEM_HOME": str(published["home"])})
    assert py.returncode == 0, py.stderr
    swift_files = {p.name: p.read_bytes() for p in (tmp_path / "swift").iterdir()}
    python_files = {p.name: p.read_bytes() for p in (tmp_path / "python").iterdir()}
    assert swift_files == python_files and {"model.mlmodel", "manifest.json", "manifest.sig"} <= set(swift_files)
    by_version = pull(tandem_device, published, tmp_path / "v1", "--version", "1", check=True)
    assert "version 1" in by_version.stdout
    # a key given inline (hex) works as the file does
    inline = device(tandem_device, "pull", "--store", str(published["store"].root), "--public-key", published["public"],
                    "--out", str(tmp_path / "inline"))
    assert inline.returncode == 0, inline.stderr
    # the settings `tandem pull` reads: the store under TANDEM_HOME, pinned keys and the minimum from the environment
    env = {"TANDEM_HOME": str(published["home"]), "TANDEM_RELEASE_PUBLIC_KEYS": published["public"]}
    assert device(tandem_device, "pull", "--out", str(tmp_path / "env"), env=env).returncode == 0
    above = device(tandem_device, "pull", "--out", str(tmp_path / "env3"), env={**env, "TANDEM_MIN_RELEASE_VERSION": "3"},
                   check=False)
    assert above.returncode != 0 and "below the minimum version 3" in above.stderr and not (tmp_path / "env3").exists()


def _flipped(published, tmp_path, relative: str) -> LocalStore:
    """A copy of the store with one byte of `relative` flipped."""
    import shutil
    root = tmp_path / "store"
    shutil.copytree(published["store"].root, root)
    target = root / relative
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return LocalStore(root)


@pytest.mark.parametrize("relative", ["model.mlmodel", "manifest.json", "manifest.sig"])
def test_swift_pull_refuses_a_flipped_byte_and_writes_nothing(tandem_device, published, tmp_path, relative):
    store = _flipped(published, tmp_path, release_prefix(published["model"], 2) + relative)
    out = tmp_path / "out"
    done = pull(tandem_device, {**published, "store": store}, out)
    assert done.returncode != 0 and "nothing was written" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_swift_pull_refuses_a_foreign_key_an_altered_pointer_and_a_rollback(tandem_device, published, tmp_path):
    _, foreign = signing.generate()
    done = device(tandem_device, "pull", "--store", str(published["store"].root), "--public-key", foreign,
                  "--out", str(tmp_path / "a"), check=False)
    assert done.returncode != 0 and "not pinned" in done.stderr and not (tmp_path / "a").exists()

    # the pointer edited to name version 1 (a store writer's rollback): its signature no longer verifies
    import shutil

    root = tmp_path / "edited"
    shutil.copytree(published["store"].root, root)
    key = root / channel_key(published["model"], "staging")
    pointer = json.loads(key.read_text())
    v1 = (root / release_prefix(published["model"], 1) / "manifest.json").read_bytes()
    key.write_text(json.dumps({**pointer, "version": "1", "manifest_sha256": hashlib.sha256(v1).hexdigest()}))
    done = pull(tandem_device, {**published, "store": LocalStore(root)}, tmp_path / "b")
    assert done.returncode != 0 and "does not verify" in done.stderr and not (tmp_path / "b").exists()
    # unsigned pointer
    key.write_text(json.dumps({k: v for k, v in pointer.items() if k != "signature"}))
    done = pull(tandem_device, {**published, "store": LocalStore(root)}, tmp_path / "c")
    assert done.returncode != 0 and "not signed" in done.stderr

    # a genuine, signed move back to version 1 passes the signature but not the app's minimum version,
    # pinned (--min-version) or remembered from what it installed before (--state)
    state = tmp_path / "installed.json"
    assert pull(tandem_device, published, tmp_path / "d2", "--state", str(state)).returncode == 0
    assert json.loads(state.read_text()) == {"installed_version": 2}
    set_channel(LocalStore(root), published["model"], "staging", 1, signer=published["signer"])
    assert pull(tandem_device, {**published, "store": LocalStore(root)}, tmp_path / "d").returncode == 0
    done = pull(tandem_device, {**published, "store": LocalStore(root)}, tmp_path / "e", "--min-version", "2")
    assert done.returncode != 0 and "below the minimum version 2" in done.stderr and not (tmp_path / "e").exists()
    done = pull(tandem_device, {**published, "store": LocalStore(root)}, tmp_path / "f", "--state", str(state))
    assert done.returncode != 0 and "below the minimum version 2" in done.stderr and not (tmp_path / "f").exists()
    assert json.loads(state.read_text()) == {"installed_version": 2}


def test_swift_pull_through_the_gateway(tandem_device, published, tmp_path):
    from tandem.gateway.server import ThreadedGateway

    with ThreadedGateway(published["settings"], published["store"]) as gw:
        done = device(tandem_device, "pull", "--gateway", gw.url, "--channel", "staging", "--public-key",
                      str(published["keyfile"]), "--min-version", "2", "--out", str(tmp_path / "gw"))
        assert done.returncode == 0, done.stderr
        missing = device(tandem_device, "pull", "--gateway", gw.url, "--channel", "nightly", "--public-key",
                         str(published["keyfile"]), "--out", str(tmp_path / "none"), check=False)
        assert missing.returncode != 0 and "404" in missing.stderr and not (tmp_path / "none").exists()
    direct = {p.name: p.read_bytes() for p in (tmp_path / "gw").iterdir()}
    assert direct["model.mlmodel"] == published["store"].get(release_prefix(published["model"], 2) + "model.mlmodel")
    assert set(direct) == {"model.mlmodel", "feature_spec.json", "manifest.json", "manifest.sig"}
