"""Makes security_fixtures.json for TandemSecurityTests with the server's own code (run from the repo
root: `.venv/bin/python swift/Tests/TandemSecurityTests/Fixtures/make_fixtures.py`).

Holds: pseudonyms of a few ids (tandem.privacy.pseudonyms), sealed containers and batches sealed by
tandem.contract.sealing / tandem.privacy.sealing (one with a fixed nonce so Swift can compare bytes),
personal-model backups by tandem.device.backup (format 3 with counters, format 2, and authentic
containers with a bad payload or bad metadata), and two releases written and signed by
tandem.release.layout (signed manifests, signed channel pointers at version 2 and back at 1).
Keys are fixed test keys, never real ones."""

from __future__ import annotations

import json
import struct
import sys
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "device")]

from device_builders import regressor_spec  # noqa: E402

from tandem.contract import sealing  # noqa: E402
from tandem.device import backup  # noqa: E402
from tandem.privacy import sealing as batch_sealing  # noqa: E402
from tandem.privacy.pseudonyms import pseudonymize  # noqa: E402
from tandem.data.store import LocalStore  # noqa: E402
from tandem.release import pointers, signing  # noqa: E402
from tandem.release.layout import channel_key, release_prefix, set_channel, write_release  # noqa: E402

KEY = bytes(range(32))
WHEN = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)


def main() -> None:
    base = regressor_spec(seed=1).SerializeToString()
    personal = regressor_spec(seed=2).SerializeToString()
    other_base = regressor_spec(seed=3).SerializeToString()

    pseudonyms = [{"user_id": u, "key": k.hex(), "pseudonym": pseudonymize(u, k)}
                  for u, k in [("hapt-user-05", KEY), ("", b"k"), ("Zoë ✓ 用户", bytes(range(7))),
                               ("device/42|x", bytes(range(64, 128)))]]

    fixed_nonce = bytes(range(100, 112))
    with mock.patch.object(sealing.secrets, "token_bytes", lambda n: fixed_nonce):
        fixed = sealing.seal(b"the plaintext", KEY, b"TNDX", {"key_id": "k1", "content": "text/plain", "n": 3})
    containers = {
        "fixed_nonce": {"magic": "TNDX", "nonce": fixed_nonce.hex(), "plaintext": b"the plaintext".hex(),
                        "header": {"key_id": "k1", "content": "text/plain", "n": 3}, "sealed": fixed.hex()},
        "batch": {"magic": "TNDMSEAL", "plaintext": (b"PAR1" + bytes(range(256)) * 4).hex(),
                  "sealed": batch_sealing.seal(b"PAR1" + bytes(range(256)) * 4, KEY, "e1").hex()},
        "empty": {"magic": "TNDX", "plaintext": "", "sealed": sealing.seal(b"", KEY, b"TNDX", {"key_id": "k0"}).hex()},
    }

    def make(counter: int) -> bytes:
        return backup.create_backup(personal, base=base, base_version="1.4.0", pseudonym="a" * 64, sample_count=48,
                                    key=KEY, key_id="device-key-1", counter=counter, created_at=WHEN)

    def authentic(meta: dict | list, body: bytes, version: int = 3) -> str:
        raw = json.dumps(meta).encode()
        return sealing.seal(struct.pack(">I", len(raw)) + raw + body, KEY, backup.MAGIC,
                            {"format_version": version, "key_id": "device-key-1"}).hex()

    import hashlib
    meta = {"base_version": "1.4.0", "base_sha256": hashlib.sha256(base).hexdigest(), "pseudonym": "a" * 64,
            "sample_count": 48, "created_at": WHEN.isoformat(), "personal_sha256": hashlib.sha256(personal).hexdigest()}
    junk = b"\xff\xff\xff not a model"
    backups = {
        "base": base.hex(), "personal": personal.hex(), "other_base": other_base.hex(),
        "counter_5": make(5).hex(), "counter_6": make(6).hex(),
        "format_2": authentic(meta, personal, version=2),
        "unknown_fields": authentic({**meta, "counter": 9, "device_class": "iPhone17,1", "extra": {"a": [1]}}, personal),
        "not_a_model": authentic({**meta, "counter": 1, "personal_sha256": hashlib.sha256(junk).hexdigest()}, junk),
        "metadata_not_json": sealing.seal(struct.pack(">I", 5) + b"{nope" + personal, KEY, backup.MAGIC,
                                          {"format_version": 3, "key_id": "device-key-1"}).hex(),
        "metadata_missing_field": authentic({k: v for k, v in meta.items() if k != "base_sha256"} | {"counter": 1}, personal),
        "metadata_wrong_type": authentic({**meta, "counter": 1, "sample_count": "48"}, personal),
        "metadata_no_counter": authentic(meta, personal),
        "metadata_length_past_end": sealing.seal(struct.pack(">I", 10**6) + b"{}", KEY, backup.MAGIC,
                                                 {"format_version": 3, "key_id": "device-key-1"}).hex(),
    }
    out = {"key": KEY.hex(), "pseudonyms": pseudonyms, "containers": containers, "backups": backups,
           "releases": releases(base, personal)}
    path = Path(__file__).with_name("security_fixtures.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def releases(v1_model: bytes, v2_model: bytes) -> dict:
    """Two releases of model "fixture-model" signed with a fixed test key; pointers at 2, then back at 1."""
    import tempfile
    signer = signing.Signer(signing.load_private(bytes(range(200, 232)).hex()))
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        out: dict = {"model": "fixture-model", "private_key": bytes(range(200, 232)).hex(),
                     "public_key": signing.public_hex(signer.private.public_key()), "key_id": signer.key_id,
                     "foreign_public_key": signing.generate()[1]}
        for version, model in ((1, v1_model), (2, v2_model)):
            files = {"model.mlmodel": model, "feature_spec.json": json.dumps({"version": version}).encode()}
            write_release(store, "fixture-model", version, files, {"metrics": {"accuracy": 0.9}}, signer=signer)
            prefix = release_prefix("fixture-model", version)
            out[f"v{version}"] = {name: store.get(prefix + name).hex()
                                  for name in ["manifest.json", "manifest.sig", *files]}
        at2 = set_channel(store, "fixture-model", "staging", 2, signer=signer)
        out["pointer_v2"] = store.get(channel_key("fixture-model", "staging")).decode()
        out["pointer_v2_canonical"] = pointers.canonical_bytes(at2).decode()
        set_channel(store, "fixture-model", "staging", 1, signer=signer)
        out["pointer_v1"] = store.get(channel_key("fixture-model", "staging")).decode()
    return out


if __name__ == "__main__":
    main()
