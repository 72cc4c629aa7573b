"""The sharing policy's parts, without a store: hierarchy, names, DP noise, the privacy ledger, the
envelope, the server's k enforcement, and the rows the server would train on."""

from __future__ import annotations

import json
import secrets

import numpy as np
import pandas as pd
import pytest

from tandem import task as tasks
from tandem.contract import features, schema
from tandem.data.validation import suites
from tandem.data.validation.suites import feature_ranges
from tandem.fleet.sharing import batch_table
from tandem.fleet.users import synthetic_fleet
from tandem.privacy import policy
from tandem.privacy import sealing as envelope
from tandem.privacy.anonymity import enforce_k
from tandem.privacy.dp_accountant import user_epsilon
from tandem.privacy.ledger import PrivacyLedger
from tandem.privacy.policy import SharingPolicy, generalize, load_policy
from tandem.settings import Settings

HAR = tasks.resolve("har")
CLASSES, FEATURE_NAMES = features.of(HAR).classes, features.of(HAR).feature_names
BATCH_COLUMNS, DEVICE_COLUMNS = schema.of(HAR).columns, schema.of(HAR).device_columns


def test_generalization_hierarchy():
    assert [generalize("device_model", "iPhone15,2", lv) for lv in range(4)] == ["iPhone15,2", "iPhone15", "iPhone", "*"]
    assert [generalize("os_version", "18.1", lv) for lv in range(3)] == ["18.1", "18", "*"]
    assert [generalize("locale", "de_DE", lv) for lv in range(3)] == ["de_DE", "de", "*"]
    assert [generalize("app_version", "1.4.0", lv) for lv in range(3)] == ["1.4.0", "1.4", "*"]
    # never less general than the value already is; idempotent on generalized values
    assert generalize("device_model", "iPhone", 1) == "iPhone"
    assert generalize("os_version", "18", 1) == "18"
    assert generalize("locale", "weird value!", 1) == "*"


def test_policy_names_presets_and_public_dict(monkeypatch):
    assert SharingPolicy().name == "pseudonymized/v1" == load_policy(None).name == load_policy("pseudonymized/v1").name
    every = load_policy("all")
    assert every.name == "pseudonymized+anonymized+dp+encrypted/v1"
    assert load_policy("dp+anonymized/v1").name == "pseudonymized+anonymized+dp/v1"  # canonical order, pseudonymized always
    with pytest.raises(ValueError):
        load_policy("nope")
    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY", "ab" * 32)
    public = every.public_dict(HAR)
    assert public["name"] == every.name and public["k"] == 5 and "clip_bounds" in public and "hierarchy" in public
    assert "ab" * 32 not in json.dumps(public)
    assert load_policy(public).name == every.name  # round trip (extra keys ignored)


def test_policy_from_json_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"version": "v1", "forms": ["dp"], "epsilon_features": 3.0, "noise": "gaussian"}))
    p = load_policy(str(path))
    assert p.name == "pseudonymized+dp/v1" and p.noise == "gaussian" and p.epsilon_features == 3.0
    with pytest.raises(ValueError):
        SharingPolicy(device_levels={"device_model": 0})  # the device must generalize at least one level


def test_clip_bounds_within_validation_ranges():
    ranges = feature_ranges(HAR)
    for name, (lo, hi) in policy.clip_bounds(HAR).items():
        assert ranges[name][0] <= lo < hi <= ranges[name][1], name


def test_dp_noise_is_deterministic_bounded_and_keyed():
    user = synthetic_fleet(HAR, 1, windows_per_class=10)[0]
    rows = np.arange(len(user))
    p = load_policy("dp")
    a, b = batch_table(user, rows, b"key", "k1", p), batch_table(user, rows, b"key", "k1", p)
    assert a.equals(b)  # same windows, same policy: identical values (re-sharing is idempotent)
    other_key = batch_table(user, rows, b"other", "k1", p)
    x = a.select(list(FEATURE_NAMES)).to_pandas().to_numpy()
    assert not np.allclose(x, other_key.select(list(FEATURE_NAMES)).to_pandas().to_numpy())
    bounds = np.array(list(policy.clip_bounds(HAR).values()))
    assert ((x >= bounds[:, 0]) & (x <= bounds[:, 1])).all()
    assert not np.allclose(x, policy.clip_features(user.features, HAR))  # it is noised
    plain = batch_table(user, rows, b"key", "k1")
    assert a.column("policy")[0].as_py() == "pseudonymized+dp/v1"
    assert plain.column("window_id").equals(a.column("window_id"))


def test_randomized_response_keeps_labels_at_the_calibrated_rate():
    user = synthetic_fleet(HAR, 1, windows_per_class=200)[0]
    rows = np.arange(len(user))
    for eps in (0.5, 3.0):
        p = SharingPolicy(forms=["dp"], epsilon_labels=eps)
        shared = batch_table(user, rows, b"key", "k1", p).column("label").to_pylist()
        kept = np.mean(np.array(shared) == user.labels)
        assert set(shared) <= set(CLASSES)
        assert abs(kept - policy.rr_keep_probability(eps, len(CLASSES))) < 0.05, (eps, kept)


def test_gaussian_is_less_noisy_than_laplace_at_the_same_epsilon_in_46_dimensions():
    lap, gau = SharingPolicy(forms=["dp"]), SharingPolicy(forms=["dp"], noise="gaussian")
    assert (policy.noise_scales(gau, HAR) * 1.0 < policy.noise_scales(lap, HAR) * np.sqrt(2)).all()  # sigma vs Laplace std


def test_privacy_ledger_composition_and_budget(tmp_path):
    p = SharingPolicy(forms=["dp"], epsilon_features=1.0, epsilon_labels=0.5, user_budget_epsilon=10.0)
    ids = [f"w{i}" for i in range(100)]
    ledger = PrivacyLedger.load(tmp_path, "user-a")
    allowed = ledger.affordable(p, ids, len(CLASSES))
    assert 6 <= len(allowed) < 100 and allowed == ids[: len(allowed)]
    ledger.charge(p, allowed, len(CLASSES))
    ledger.save()
    again = PrivacyLedger.load(tmp_path, "user-a")
    assert again.spent(p.delta) <= 10.0
    assert again.affordable(p, ids, len(CLASSES)) == allowed  # charged windows are free; nothing new fits
    assert again.charge(p, allowed, len(CLASSES)) == 0
    # per user, with dp-accounting's PLD: one window costs its epsilons, many cost far less than their sum
    one = [[{"mechanism": "pure", "epsilon": 1.0}, {"mechanism": "randomized_response", "epsilon": 0.5}]]
    assert user_epsilon(one, 1e-6) == pytest.approx(1.5, abs=1e-3)
    assert user_epsilon(one * 400, 1e-6) < 600 / 2


def test_envelope_roundtrip_tamper_and_unknown_key():
    key = secrets.token_bytes(32)
    sealed = envelope.seal(b"PAR1 plaintext PAR1", key, "e7")
    assert envelope.is_sealed(sealed) and b"PAR1" not in sealed and b"plaintext" not in sealed
    plain, header = envelope.open_sealed(sealed, {"e7": key})
    assert plain == b"PAR1 plaintext PAR1" and header["key_id"] == "e7" and header["alg"] == "AES-256-GCM"
    tampered = bytearray(sealed)
    tampered[-20] ^= 1
    with pytest.raises(envelope.EnvelopeError, match="authentication"):
        envelope.open_sealed(bytes(tampered), {"e7": key})
    header_tampered = sealed.replace(b'"e7"', b'"e8"')
    with pytest.raises(envelope.EnvelopeError, match="unknown key id"):
        envelope.open_sealed(header_tampered, {"e7": key})
    with pytest.raises(envelope.EnvelopeError, match="authentication"):
        envelope.open_sealed(header_tampered, {"e8": key})  # the header is authenticated too
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_sealed(sealed[:30], {"e7": key})


def test_keyring_from_settings(monkeypatch):
    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY", "11" * 32)
    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY_ID", "e2")
    monkeypatch.setenv("TANDEM_ENCRYPTION_OLD_KEYS", "e1:" + "22" * 32)
    settings = Settings()
    assert envelope.keyring(settings) == {"e1": bytes([0x22]) * 32, "e2": bytes([0x11]) * 32}
    assert "11" * 32 not in repr(settings) and "22" * 32 not in settings.model_dump_json()  # secrets stay secret
    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY", "abcd")
    with pytest.raises(envelope.EnvelopeError, match="32 bytes"):
        envelope.sealing_key(Settings())


def _frame(groups: dict[tuple, int]) -> pd.DataFrame:
    rows = []
    for (model, os_, locale), n_users in groups.items():
        for u in range(n_users):
            for w in range(3):
                rows.append({"pseudonym": f"{model}{os_}{locale}{u}", "window_id": f"{model}{os_}{locale}{u}{w}",
                             "device_model": model, "os_version": os_, "app_version": "1.4", "locale": locale})
    return pd.DataFrame(rows)


def test_enforce_k_generalizes_then_suppresses():
    frame = _frame({("iPhone15", "18", "de"): 4, ("iPhone14", "18", "de"): 1, ("iPhone16", "17", "en"): 3,
                    ("iPhone15", "17", "en"): 2})
    out, report = enforce_k(frame, k=3, max_suppression=0.1, quasi_identifiers=DEVICE_COLUMNS)
    assert report["satisfied"] and report["smallest_group_users"] >= 3
    per_user = out.drop_duplicates(["pseudonym", *DEVICE_COLUMNS])
    assert per_user.groupby(list(DEVICE_COLUMNS)).size().min() >= 3
    assert any("generalize" in s for s in report["steps"])
    assert not set(out["device_model"]) & {"iPhone15", "iPhone14", "iPhone16"}  # generalized further
    # a lone outlier among many is suppressed rather than generalizing everyone
    frame = _frame({("iPhone15", "18", "de"): 30, ("iPhone14", "18", "de"): 1})
    out, report = enforce_k(frame, k=5, max_suppression=0.1, quasi_identifiers=DEVICE_COLUMNS)
    assert report["suppressed_rows"] == 3 and set(out["device_model"]) == {"iPhone15"}


def test_local_view():
    users = synthetic_fleet(HAR, 6, windows_per_class=4)
    plain = pd.concat([batch_table(u, np.arange(len(u)), b"key", "k1").to_pandas() for u in users], ignore_index=True)
    assert list(plain.columns) == list(BATCH_COLUMNS) and plain["pseudonym"].nunique() == 6
    local = policy.local_view(plain, load_policy("all"), HAR)
    assert (local["device_model"] != plain["device_model"]).all()
    bounds = np.array(list(policy.clip_bounds(HAR).values()))
    x = local[list(FEATURE_NAMES)].to_numpy()
    assert ((x >= bounds[:, 0]) & (x <= bounds[:, 1])).all()


def test_committed_form_suites_match_their_generators():
    for form in suites.FORM_SUITES:
        path = suites.suite_path(HAR, form)
        assert path.read_text() == suites.suite_json(suites.build_form_suite(form, HAR)), "run: tandem expectations"
        assert len(suites.load_suite(path).expectations) == len(json.loads(path.read_text())["expectations"])
