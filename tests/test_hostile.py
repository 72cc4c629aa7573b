"""The hostile-world probes that failed on main, each as a test: signed releases and safe pulls, one bad
object never stopping ingest, limits and dedup, withdrawal, malformed settings. Real parts: the local
store and moto's S3 server over HTTP, real GX validation, real Ed25519."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tandem import pipeline
from tandem import task as tasks
from tandem.contract import features
from tandem.data import bulk_ingest, identity, ingest, revocations
from tandem.data.limits import Limits, ReferenceKeys, Usage, feature_digests
from tandem.data.store import LocalStore, open_store, sha256_hex
from tandem.fleet.sharing import table_bytes
from tandem.fleet.users import synthetic_fleet
from tandem.privacy import sealing
from tandem.release import signing
from tandem.release.layout import IntegrityError, ReleaseError, pull, release_prefix, set_channel, write_release
from tandem.settings import Settings
from tests.batches import good_table, replace_column
from tests.flow_helpers import share_synthetic

PRIVATE, PUBLIC = signing.generate()
SIGNER = signing.Signer(signing.load_private(PRIVATE))
TRUST = signing.TrustedKeys.of([signing.load_public(PUBLIC)])
FILES = {"model.mlmodel": b"\x08\x04genuine-model", "feature_spec.json": b'{"version": 1}'}
KEY = b"pseudonym-key-for-tests"
TASK = tasks.resolve("har")


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(f"s3://{request.getfixturevalue('s3_bucket')}/h", request.getfixturevalue("s3_endpoint"))


@pytest.fixture(scope="module")
def users():
    return synthetic_fleet(TASK, 3, windows_per_class=6, seed=3)


def batch(user, n=8, **columns) -> bytes:
    table = good_table(user, n, KEY)
    for name, values in columns.items():
        table = replace_column(table, name, values if isinstance(values, list) else [values] * table.num_rows)
    return table_bytes(table)


def judge(store, key, **judges) -> dict:
    """One batch through production's ingest path (`tandem ingest`'s chunk, here a chunk of one)."""
    return bulk_ingest.ingest_chunk(store, [ingest.batch_ref(key)], bulk_ingest.Judges(TASK, **judges))[0]


# ---------------------------------------------------------------- signed releases, safe pulls

def _publish(store, version=1, signer=SIGNER):
    write_release(store, "m", version, FILES, {}, signer=signer)
    set_channel(store, "m", "staging", version, signer=signer)


def test_a_tampered_model_with_recomputed_manifest_and_channel_is_refused(store, tmp_path):
    _publish(store)
    prefix = release_prefix("m", 1)
    evil = b"\x08\x04evil-model"
    manifest = json.loads(store.get(prefix + "manifest.json"))
    manifest["files"]["model.mlmodel"] = {"sha256": sha256_hex(evil), "size": len(evil)}
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    store.put(prefix + "model.mlmodel", evil)
    store.put(prefix + "manifest.json", manifest_bytes)
    channel = json.loads(store.get("channels/m/staging.json"))
    store.put("channels/m/staging.json", json.dumps({**channel, "manifest_sha256": sha256_hex(manifest_bytes)}).encode())

    out = tmp_path / "app"
    for how in ({"channel": "staging"}, {"channel": None, "version": "1"}):
        with pytest.raises(IntegrityError, match="does not verify"):
            pull(store, "m", out, TRUST, **how)
    assert not out.exists()


def test_unsigned_or_foreign_signed_releases_are_refused_and_rotation_works(store, tmp_path):
    write_release(store, "m", 1, FILES, {})  # unsigned
    with pytest.raises(IntegrityError, match="not signed"):
        pull(store, "m", tmp_path / "a", TRUST, channel=None, version=1)
    other_private, other_public = signing.generate()
    other = signing.Signer(signing.load_private(other_private))
    write_release(store, "m", 2, FILES, {}, signer=other)
    with pytest.raises(IntegrityError, match="not pinned"):
        pull(store, "m", tmp_path / "b", TRUST, channel=None, version=2)
    both = signing.TrustedKeys.of([signing.load_public(PUBLIC), signing.load_public(other_public)])  # a rotation
    assert pull(store, "m", tmp_path / "c", both, channel=None, version=2)["signed_by"] == other.key_id
    with pytest.raises(IntegrityError, match="no public key"):
        pull(store, "m", tmp_path / "d", signing.TrustedKeys({}), channel=None, version=2)


@pytest.mark.parametrize("name", ["/tmp/tandem-hostile-x", "../escaped", "sub/dir.bin", ".hidden"])
def test_a_manifest_naming_a_path_writes_nothing_outside_out(tmp_path, name):
    store = LocalStore(tmp_path / "store")
    prefix = release_prefix("m", 1)
    # even a correctly signed manifest (a compromised publisher) may only name plain files
    manifest = {"model": "m", "version": "1", "files": {name: {"sha256": sha256_hex(b"x"), "size": 1}}}
    manifest_bytes = json.dumps(manifest).encode()
    store.put(prefix + "manifest.json", manifest_bytes)
    store.put(prefix + "manifest.sig", SIGNER.sign(manifest_bytes))
    (tmp_path / "store" / prefix / "escaped").parent.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "work" / "out"
    with pytest.raises(IntegrityError, match="not a plain file name"):
        pull(LocalStore(tmp_path / "store"), "m", out, TRUST, channel=None, version=1)
    assert not Path("/tmp/tandem-hostile-x").exists()
    assert not (tmp_path / "work" / "escaped").exists() and not out.exists()
    with pytest.raises(ReleaseError):
        write_release(store, "m", 2, {name: b"x"}, {}, signer=SIGNER)


@pytest.mark.parametrize("how", [{"channel": "../../x"}, {"channel": None, "version": "../1"},
                                 {"channel": None, "version": "99"}])
def test_bad_channel_or_version_is_a_release_error(tmp_path, how):
    store = LocalStore(tmp_path / "store")
    _publish(store)
    with pytest.raises(ReleaseError):
        pull(store, "m", tmp_path / "out", TRUST, **how)


# ---------------------------------------------------------------- one bad object never stops ingest

def test_a_legal_248_byte_name_is_ingested(tmp_path, users):
    store = LocalStore(tmp_path / "store")
    key = f"incoming/dev/{'n' * 240}.parquet"  # 248 bytes: legal on every file system here
    store.put(key, batch(users[0]))
    assert [r.key for r in ingest.discover(store)] == [key]
    assert judge(store, key)["outcome"] == "accepted"
    assert ingest.discover(store) == []


def test_symlinks_and_fifos_are_refused_without_being_read(tmp_path, users, monkeypatch):
    monkeypatch.setenv("TANDEM_PSEUDONYM_KEY", "secret-value-in-environ-" + "z" * 8)
    store = LocalStore(tmp_path / "store")
    incoming = tmp_path / "store" / "incoming" / "dev"
    incoming.mkdir(parents=True)
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(batch(users[0]))
    (incoming / "environ.parquet").symlink_to("/proc/self/environ")
    (incoming / "outside.parquet").symlink_to(outside)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.parquet").write_bytes(batch(users[0]))
    (incoming / "linked-dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    os.mkfifo(incoming / "pipe.parquet")
    refs = ingest.discover(store)
    # the linked folder is never entered (its x.parquet is not a batch of ours), but recorded and quarantined
    assert {r.key.split("/")[-1] for r in refs} == {"environ.parquet", "outside.parquet", "pipe.parquet", "linked-dir"}
    for ref in refs:
        entry = judge(store, ref.key)
        assert entry["outcome"] == "quarantined" and entry["reason"].startswith("refused"), entry
    assert ingest.accepted_entries(store) == []
    everything = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*")
                          if p.is_file() and not p.is_symlink() and p.stat().st_size < 10**7)
    assert b"secret-value-in-environ" not in everything


def test_batch_ids_are_per_object_not_per_file_name(store, users):
    store.put("incoming/A/x.parquet", batch(users[0]))
    store.put("incoming/B/x.parquet", batch(users[1], label="flying"))
    refs = ingest.discover(store)
    assert len({r.batch_id for r in refs}) == 2
    outcomes = {r.key: judge(store, r.key)["outcome"] for r in refs}
    assert outcomes == {"incoming/A/x.parquet": "accepted", "incoming/B/x.parquet": "quarantined"}
    store.put("incoming/C/x.parquet", batch(users[2]))  # a new file reusing a ledgered name
    assert [r.key for r in ingest.discover(store)] == ["incoming/C/x.parquet"]


def test_hidden_names_are_skipped_on_every_backend(store, users):
    store.put("incoming/dev/.x.parquet", batch(users[0]))
    store.put("incoming/.dev/y.parquet", batch(users[0]))
    store.put("incoming/dev/z.parquet", batch(users[0]))
    assert [r.key for r in ingest.discover(store)] == ["incoming/dev/z.parquet"]


def test_any_exception_while_judging_quarantines_that_batch_only(tmp_path, users, monkeypatch):
    """Fault injection (mocks): an unforeseen error, which no file we could craft is known to cause now,
    raised by the per-batch judge's validator (for a batch the bulk pass cannot take: a sealed one) and
    by an admission check every validated batch passes through; one chunk, as production runs it."""
    store = LocalStore(tmp_path / "store")
    key = b"k" * 32
    store.put("incoming/a/boom.sealed", sealing.seal(batch(users[0]), key, "e1"))
    store.put("incoming/c/bang.parquet", batch(users[2]))
    store.put("incoming/b/fine.parquet", batch(users[1]))
    real_validate, real_shape = ingest.validate_batch, identity.text_shape_breach
    bang = pq.read_table(io.BytesIO(batch(users[2]))).column("pseudonym")[0].as_py()

    def validate(data, batch_id, *args, **kw):
        if batch_id == ingest.batch_ref("incoming/a/boom.sealed").batch_id:
            raise MemoryError("simulated")
        return real_validate(data, batch_id, *args, **kw)

    def shape(rows):
        if rows.column("pseudonym")[0].as_py() == bang:
            raise RuntimeError("simulated")
        return real_shape(rows)

    monkeypatch.setattr(ingest, "validate_batch", validate)
    monkeypatch.setattr(identity, "text_shape_breach", shape)
    judges = bulk_ingest.Judges(TASK, {"e1": key})
    entries = {e["key"]: e for e in bulk_ingest.ingest_chunk(store, ingest.discover(store), judges)}
    assert entries["incoming/a/boom.sealed"]["outcome"] == "quarantined"
    assert "MemoryError" in entries["incoming/a/boom.sealed"]["reason"]
    assert entries["incoming/c/bang.parquet"]["outcome"] == "quarantined"
    assert "could not be judged: RuntimeError" in entries["incoming/c/bang.parquet"]["reason"]
    assert entries["incoming/b/fine.parquet"]["outcome"] == "accepted"


# ---------------------------------------------------------------- limits, dedup, quasi-identifiers

def test_limits_quarantine_with_the_numbers(tmp_path, users):
    store = LocalStore(tmp_path / "store")
    table = good_table(users[0], 30, KEY)
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1)  # 30 row groups
    store.put("incoming/d/groups.parquet", sink.getvalue())
    store.put("incoming/d/rows.parquet", batch(users[0], 30))
    store.put("incoming/d/big.parquet", batch(users[0], 30))
    small = Limits(max_row_groups=10, max_batch_rows=10_000)
    assert "30 row groups" in judge(store, "incoming/d/groups.parquet", limits=small)["reason"]
    assert "30 rows" in judge(store, "incoming/d/rows.parquet", limits=Limits(max_batch_rows=20))["reason"]
    assert "bytes" in judge(store, "incoming/d/big.parquet", limits=Limits(max_batch_bytes=1000))["reason"]


def test_rows_and_batches_per_pseudonym_per_day_are_limited(tmp_path, users):
    store = LocalStore(tmp_path / "store")
    limits = Limits(max_pseudonym_rows_per_day=12, max_pseudonym_batches_per_day=5)
    store.put("incoming/d/1.parquet", batch(users[0], 8))
    assert judge(store, "incoming/d/1.parquet", limits=limits)["outcome"] == "accepted"
    # the next batch of the same pseudonym, same day, other windows
    table = good_table(users[0], 16, KEY).slice(8)
    store.put("incoming/d/2.parquet", table_bytes(table))
    usage = Usage(store)  # what the table holds, as a chunk of a run sees it
    entry = judge(store, "incoming/d/2.parquet", limits=limits, usage=usage)
    assert entry["outcome"] == "quarantined" and "16 rows" in entry["reason"], entry["reason"]


def test_an_evaluation_users_windows_are_refused(tmp_path, users):
    store = LocalStore(tmp_path / "store")
    data = batch(users[1], 8)
    frame = pq.read_table(io.BytesIO(data)).to_pandas()
    names = tuple(features.of(TASK).feature_names)
    reference_windows = ReferenceKeys(digests=frozenset(feature_digests(frame.iloc[:3], names)), feature_names=names)
    store.put("incoming/e/mine.parquet", data)
    entry = judge(store, "incoming/e/mine.parquet", reference_windows=reference_windows)
    assert entry["outcome"] == "quarantined" and "3 of 8 rows" in entry["reason"]


def test_the_same_rows_under_fresh_window_ids_count_once(tandem_home, users):
    ctx = pipeline.Context(Settings())
    store = ctx.store
    table = good_table(users[0], 8, KEY)
    store.put("incoming/d/a.parquet", table_bytes(table))
    fresh = [f"{i:032x}" for i in range(8)]
    i = table.schema.get_field_index("window_id")
    store.put("incoming/d/b.parquet", table_bytes(table.set_column(i, table.schema.field(i), pa.array(fresh))))
    for ref in ingest.discover(store):
        assert judge(store, ref.key)["outcome"] == "accepted"
    assert pipeline.snapshot_dataset(ctx).manifest["rows"] == 8


@pytest.mark.parametrize("column,value", [("device_model", "3F2504E0-4F89-11D3-9A0C-0305E82C3301"),
                                          ("locale", "C02XK0ABJGH5"), ("policy", "madeup/v1")])
def test_quasi_identifiers_and_policy_names_must_have_their_shape(tmp_path, users, column, value):
    store = LocalStore(tmp_path / "store")
    data = batch(users[0], 8, **{column: value})
    if column == "policy":  # without the policy metadata: only the column says it
        data = table_bytes(pq.read_table(io.BytesIO(data)).replace_schema_metadata(None))
    store.put("incoming/q/x.parquet", data)
    entry = judge(store, "incoming/q/x.parquet")
    assert entry["outcome"] == "quarantined" and column in entry["reason"], entry["reason"]
    if column != "policy":  # the reason names the column, never a possible identifier
        assert value not in entry["reason"] and value not in json.dumps(entry)


# ---------------------------------------------------------------- withdrawal

def test_revoked_batches_and_pseudonyms_leave_every_later_snapshot(tandem_home, users):
    settings = Settings()
    ctx = pipeline.Context(settings)
    store = ctx.store
    for i, user in enumerate(users):
        store.put(f"incoming/u{i}/b.parquet", batch(user, 8))
    for ref in ingest.discover(store):
        assert judge(store, ref.key)["outcome"] == "accepted"
    before = pipeline.snapshot_dataset(ctx)
    assert before.manifest["rows"] == 24 and "withdrawn" not in before.manifest

    poisoned = ingest.batch_ref("incoming/u0/b.parquet").batch_id
    revocations.revoke(store, "batch", poisoned, "poisoned batch", {e["batch_id"] for e in ingest.accepted_entries(store)})
    victim = pq.read_table(io.BytesIO(store.get("incoming/u1/b.parquet"))).column("pseudonym")[0].as_py()
    revocations.revoke(store, "pseudonym", victim, "erasure request")
    after = pipeline.snapshot_dataset(ctx)
    assert after.snapshot_id != before.snapshot_id
    assert after.manifest["rows"] == 8 and victim not in set(after.frame["pseudonym"])
    assert poisoned not in after.manifest["batches"]
    withdrawn = after.manifest["withdrawn"]
    assert {r["reason"] for r in withdrawn["revocations"]} == {"poisoned batch", "erasure request"}
    assert withdrawn["rows_removed"] == 8 and victim not in json.dumps(withdrawn)
    with pytest.raises(revocations.RevocationError):
        revocations.revoke(store, "pseudonym", "hapt-user-05", "erasure request")  # a raw id is refused


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("url", ["s3:/bucket", "https://bucket.s3.amazonaws.com/x", "s3://B/x", "file:///tmp/x"])
def test_a_malformed_store_url_is_refused(url, monkeypatch):
    monkeypatch.setenv("TANDEM_STORE", url)
    with pytest.raises(ValidationError, match="TANDEM_STORE"):
        Settings()


def test_signing_key_never_serializes(monkeypatch):
    monkeypatch.setenv("TANDEM_SIGNING_KEY", PRIVATE)
    settings = Settings()
    assert PRIVATE not in repr(settings) and PRIVATE not in settings.model_dump_json()
    assert signing.signer_from_settings(settings).key_id == SIGNER.key_id


def test_batches_ledgered_under_their_old_stem_ids_are_not_judged_again(tmp_path, users):
    store = LocalStore(tmp_path / "store")
    store.put("incoming/dev/old.parquet", batch(users[0]))
    store.put("ledger/batches/old.json", json.dumps({"batch_id": "old", "key": "incoming/dev/old.parquet",
                                                     "outcome": "accepted"}).encode())
    store.put("incoming/other/old.parquet", batch(users[1]))  # same stem, another object: new
    assert [r.key for r in ingest.discover(store)] == ["incoming/other/old.parquet"]


def test_an_evaluation_users_own_local_windows_uploaded_are_quarantined_by_the_pipeline(tandem_home):
    settings = Settings()
    _, evaluators = share_synthetic(settings)
    ctx = pipeline.Context(settings)
    own = (settings.devices_dir / evaluators[0].user_id / "local.parquet").read_bytes()
    ctx.store.put("incoming/intruder/eval.parquet", own)
    entry = pipeline.judge_batch(ctx, ingest.batch_ref("incoming/intruder/eval.parquet"))
    assert entry["outcome"] == "quarantined" and "reference set" in entry["reason"], entry["reason"]


def test_an_accepted_batch_changed_afterwards_changes_nothing_trained_on(tandem_home, users):
    """The table holds the rows as they were accepted: overwriting the upload afterwards neither stops
    a snapshot nor slips the new rows in."""
    ctx = pipeline.Context(Settings())
    store = ctx.store
    for i, user in enumerate(users[:2]):
        store.put(f"incoming/u{i}/b.parquet", batch(user, 8))
    for ref in ingest.discover(store):
        assert judge(store, ref.key)["outcome"] == "accepted"
    before = pipeline.snapshot_dataset(ctx)
    store.put("incoming/u0/b.parquet", batch(users[0], 8, label="sitting"))  # overwritten after acceptance
    assert not ingest.discover(store)
    after = pipeline.snapshot_dataset(ctx)
    assert after.manifest["rows"] == 16 and after.snapshot_id == before.snapshot_id
    assert after.frame["label"].tolist() == before.frame["label"].tolist()