"""Every form end to end through the real device upload, ingest (GX validation, ledger, quarantine)
and snapshot, on a local store; then a scan of every byte the server keeps (parquet decoded to
text too) for raw user ids, plain quasi-identifiers and unencrypted payloads."""

from __future__ import annotations

import io
import json
import secrets

import pyarrow.parquet as pq
import pytest

from tandem import task as tasks
from tandem.contract import schema
from tandem.data import bulk_ingest, ingest
from tandem.data import snapshot as dataset
from tandem.data.store import LocalStore
from tandem.fleet import sharing
from tandem.fleet.users import synthetic_fleet
from tandem.privacy import sealing as envelope
from tandem.privacy.ledger import PrivacyLedger
from tandem.privacy.policy import SharingPolicy, load_policy

RAW_IDS = ("synthetic-user-", "hapt-user-")
PLAIN_QI = ("iPhone14,5", "iPhone15,2", "iPhone15,4", "iPhone16,1", "de_DE", "en_US", "fr_FR", "es_ES", "1.4.0")
KEY = b"pseudonym-key"
HAR = tasks.resolve("har")
DEVICE_COLUMNS = schema.of(HAR).device_columns  # the task's quasi-identifiers


@pytest.fixture
def sealing_key():
    """(key id, key) the devices seal with; the server's keyring holds it."""
    return "e1", secrets.token_bytes(32)


@pytest.fixture(scope="module")
def users():
    return synthetic_fleet(HAR, 6, windows_per_class=4, seed=2)


def stored_text(store: LocalStore, prefix: str = "") -> dict[str, bytes]:
    """Every object under `prefix`: its bytes, plus its decoded text when it is parquet."""
    out = {}
    for key in store.list(prefix):
        data = store.get(key)
        if data[:4] == b"PAR1":
            table = pq.read_table(io.BytesIO(data))
            data += table.to_pandas().to_csv(sep="\t").encode() + json.dumps(
                {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}).encode()
        out[key] = data
    return out


def assert_scan_clean(store: LocalStore, policy: SharingPolicy):
    everything = stored_text(store)
    assert everything
    for key, data in everything.items():
        for raw in RAW_IDS:
            assert raw.encode() not in data, (key, raw)
        if policy.has("anonymized"):
            for plain in PLAIN_QI:
                assert plain.encode() not in data, (key, plain)
    if policy.has("encrypted"):
        for key, data in everything.items():
            if key.startswith(("incoming/", "quarantine/")) and not key.endswith((".json", ".txt")):
                assert envelope.is_sealed(data), key
                for plain in (b"PAR1", b"gravity_x_mean", b"walking", b"pseudonym"):
                    assert plain not in data, (key, plain)


def run_server(store, keyring=None):
    """The server's ingest of every new batch, as one chunk (what each worker of a run does)."""
    return bulk_ingest.ingest_chunk(store, ingest.discover(store), bulk_ingest.Judges(HAR, keyring or {}), "test-run")


@pytest.mark.parametrize("preset", ["pseudonymized", "anonymized", "dp", "encrypted", "all"])
def test_each_form_passes_validation_and_never_stores_plain_data(preset, users, tmp_path, sealing_key):
    store = LocalStore(tmp_path / "store")
    policy = load_policy(preset).model_copy(update={"k": 2, "user_budget_epsilon": 60.0})
    first = sharing.share(store, users, 0.8, KEY, batch_size=32, policy=policy, ledger_dir=tmp_path / "devices",
                          seal_with=sealing_key)
    again = sharing.share(store, users, 0.8, KEY, batch_size=32, policy=policy, ledger_dir=tmp_path / "devices",
                          seal_with=sealing_key)
    keyring = dict([sealing_key])
    assert first.written and not again.written  # re-sharing the same windows writes nothing new
    suffix = envelope.SEALED_SUFFIX if policy.has("encrypted") else ".parquet"
    assert all(k.endswith(suffix) for k in store.list("incoming/"))

    entries = run_server(store, keyring)
    assert entries and all(e["outcome"] == "accepted" for e in entries), [e["reason"] for e in entries]
    assert all(e["policy"] == [policy.name] for e in entries)
    forms = [f for f in ("anonymized", "dp", "encrypted") if policy.has(f)]
    assert all(("+".join(["shared_batch", *forms]) in e["reason"]) if forms else True for e in entries)
    assert all(e["stored_format"] == ("tandem-sealed-v1" if policy.has("encrypted") else "parquet") for e in entries)

    snap = dataset.table_snapshot(store, HAR)
    assert set(snap.frame["policy"]) == {policy.name}
    assert policy.name in snap.manifest["policies"]
    if policy.has("anonymized"):
        k_report = snap.manifest["k_anonymity"]
        assert k_report["satisfied"] and k_report["k"] == 2
        per_user = snap.frame.drop_duplicates(["pseudonym", *DEVICE_COLUMNS])
        assert per_user.groupby(list(DEVICE_COLUMNS)).size().min() >= 2
    else:
        assert "k_anonymity" not in snap.manifest
    if policy.has("dp"):
        assert first.withheld > 0  # the budget (60) stops every user after 6 windows (10 each)
        assert snap.frame.groupby("pseudonym").size().max() <= 6
    assert_scan_clean(store, policy)


def test_tampered_unknown_key_and_unsealed_encrypted_batches_are_quarantined(users, tmp_path, sealing_key):
    store = LocalStore(tmp_path / "store")
    policy = load_policy("encrypted")
    report = sharing.share(store, users[:3], 0.5, KEY, batch_size=64, policy=policy, seal_with=sealing_key)
    keys = report.written
    # 1. a flipped byte in the ciphertext
    data = bytearray(store.get(keys[0]))
    data[-40] ^= 0xFF
    store.put(keys[0], bytes(data))
    # 2. sealed under a key the server does not have
    sharing.share(store, users[3:4], 0.5, KEY, batch_size=64, policy=policy.model_copy(update={"encryption_key_id": None}),
                  seal_with=("e9", secrets.token_bytes(32)))
    # 3. declares encrypted but was uploaded as plain parquet
    plain = sharing.table_bytes(sharing.batch_table(users[4], list(range(8)), KEY, "k1", policy))
    store.put("incoming/rogue/plainbatch.parquet", plain)

    entries = {e["key"]: e for e in run_server(store, dict([sealing_key]))}
    assert entries[keys[0]]["outcome"] == "quarantined"
    assert "failed authentication" in entries[keys[0]]["reason"]
    assert entries[keys[1]]["outcome"] == "accepted"
    unknown = [e for k, e in entries.items() if k not in keys and not k.startswith("incoming/rogue/")]
    assert len(unknown) == 1 and unknown[0]["outcome"] == "quarantined" and "unknown key id 'e9'" in unknown[0]["reason"]
    rogue = entries["incoming/rogue/plainbatch.parquet"]
    assert rogue["outcome"] == "quarantined" and rogue["reason"].startswith("encrypted form: stored_format")
    for e in (entries[keys[0]], unknown[0]):
        q = e["quarantine"]
        assert store.exists(q + "batch.sealed") and not store.exists(q + "batch.parquet")
        assert store.exists(q + "reason.txt") and store.exists(q + "validation.json")
    # the rogue plaintext is the device's fault: it is in incoming/ (and its quarantine copy) as uploaded;
    # everything the server wrote for sealed batches is free of plaintext
    for key, data in stored_text(store).items():
        if "rogue" in key or key.startswith(rogue["quarantine"]):
            continue
        if key.startswith(("incoming/", "quarantine/")) and not key.endswith((".json", ".txt")):
            assert envelope.is_sealed(data) and b"PAR1" not in data, key


def test_anonymized_batch_with_plain_metadata_is_quarantined_without_echoing_it(users, tmp_path):
    store = LocalStore(tmp_path / "store")
    table = sharing.batch_table(users[1], list(range(8)), KEY, "k1")  # plain metadata...
    i = table.schema.get_field_index("policy")
    import pyarrow as pa

    table = table.set_column(i, "policy", pa.array(["pseudonymized+anonymized/v1"] * table.num_rows))
    table = table.replace_schema_metadata({b"tandem.policy": load_policy("anonymized").public_json(tasks.resolve("har")).encode()})
    store.put("incoming/x/plainqi.parquet", sharing.table_bytes(table))  # ...but declares anonymized
    [entry] = run_server(store)
    assert entry["outcome"] == "quarantined" and "anonymized form: device_model" in entry["reason"]
    for text in (entry["reason"], store.get(entry["quarantine"] + "validation.json").decode()):
        for plain in PLAIN_QI:
            assert plain not in text


def test_a_user_past_the_budget_shares_nothing_more(users, tmp_path):
    store = LocalStore(tmp_path / "store")
    devices = tmp_path / "devices"
    policy = SharingPolicy(forms=["dp"], epsilon_features=4.0, epsilon_labels=1.0, user_budget_epsilon=20.0)
    user = users[0]
    first = sharing.share_user(store, user, 0.3, KEY, batch_size=4, policy=policy, ledger_dir=devices)
    assert first.windows == 4 and first.withheld > 0  # 5 a window, budget 20
    ledger = PrivacyLedger.load(devices, user.user_id)
    assert (devices / user.user_id / "privacy_ledger.json").exists()
    assert ledger.spent(policy.delta) == pytest.approx(20.0, abs=1e-3)  # 4 pure releases: PLD = their sum at this delta
    # more windows offered, a later day: nothing new is shared, nothing more is spent
    more = sharing.share_user(store, user, 1.0, KEY, batch_size=4, policy=policy, ledger_dir=devices)
    assert not more.written and more.windows == 4
    assert PrivacyLedger.load(devices, user.user_id).spent(policy.delta) == pytest.approx(20.0, abs=1e-3)
    assert len(store.list("incoming/")) == 1
    # the ledger stays on the device: the store knows nothing of it
    assert not any("ledger.json" in k or "privacy" in k for k in store.list())
