"""Per-user accounting: Tandem's epsilon is dp-accounting's for the same mechanism sequence; old
ledgers are migrated or refused; a device past its budget uploads nothing and says so."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.pld import privacy_loss_distribution as pld
from dp_accounting.privacy_accountant import NeighboringRelation

from tandem import task as tasks
from tandem.data.store import LocalStore
from tandem.fleet import sharing
from tandem.fleet.users import synthetic_fleet
from tandem.privacy.ledger import FORMAT, LedgerError, PrivacyLedger
from tandem.privacy.policy import SharingPolicy
from tandem.privacy.privacy_manifest import data_guarantee

KEY = b"accountant-test-key"
HAR = tasks.resolve("har")  # six classes: its labels are 6-ary randomized response


def _rr_event(epsilon: float, k: int) -> dp_event.RandomizedResponseDpEvent:
    # k-ary randomized response keeping the truth with e^eps / (e^eps + k - 1); with k = 2 it is the
    # dominating pair of any pure eps-DP mechanism
    return dp_event.RandomizedResponseDpEvent(k / (math.exp(epsilon) + k - 1), k)


def test_reported_epsilon_equals_dp_accounting_for_the_same_sequence(tmp_path):
    policy = SharingPolicy(forms=["dp"], epsilon_features=0.6, epsilon_labels=0.3, user_budget_epsilon=1e6)
    ledger = PrivacyLedger.load(tmp_path, "user-a")
    ledger.charge(policy, [f"w{i}" for i in range(40)], 6)
    ledger.save()
    ours = PrivacyLedger.load(tmp_path, "user-a").spent(policy.delta)

    accountant = pld_privacy_accountant.PLDAccountant(NeighboringRelation.REPLACE_ONE)
    for _ in range(40):  # one window: its features (pure eps-DP), then its label (6-ary RR)
        accountant.compose(_rr_event(0.6, 2))
        accountant.compose(_rr_event(0.3, 6))
    theirs = accountant.get_epsilon(policy.delta)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours < 40 * 0.9  # tighter than adding epsilons up, as PLD should be


def test_gaussian_windows_equal_dp_accounting(tmp_path):
    policy = SharingPolicy(forms=["dp"], noise="gaussian", epsilon_features=2.0, epsilon_labels=0.5,
                           user_budget_epsilon=1e6)
    ledger = PrivacyLedger(user="u")
    ledger.charge(policy, [f"w{i}" for i in range(10)], 6)
    sigma = policy.window_events(6)[0]["sigma"]
    expected = (pld.from_gaussian_mechanism(sigma).self_compose(10)
                .compose(pld.from_randomized_response(6 / (math.exp(0.5) + 5), 6).self_compose(10)))
    assert ledger.spent(policy.delta) == pytest.approx(expected.get_epsilon_for_delta(policy.delta), rel=1e-6)


def test_v1_ledger_is_migrated_and_unknown_formats_are_refused(tmp_path):
    folder = tmp_path / "user-a"
    folder.mkdir()
    v1 = {"user": "user-a", "charges": [
        {"window": f"w{i}", "fingerprint": "f", "features": {"mechanism": "laplace", "epsilon": 1.0},
         "labels": {"mechanism": "randomized_response", "epsilon": 0.5}} for i in range(3)]}
    (folder / "privacy_ledger.json").write_text(json.dumps(v1))
    ledger = PrivacyLedger.load(tmp_path, "user-a")
    assert ledger.migrated_from == "v1" and len(ledger.charges) == 3
    assert ledger.spent(1e-6) == pytest.approx(4.5, abs=1e-3)  # 3 windows of 1.0 + 0.5: at most basic composition
    ledger.save()
    assert json.loads((folder / "privacy_ledger.json").read_text())["format"] == FORMAT

    (folder / "privacy_ledger.json").write_text(json.dumps({"format": "tandem-privacy-ledger/v9", "charges": []}))
    with pytest.raises(LedgerError, match="refusing to share"):
        PrivacyLedger.load(tmp_path, "user-a")
    v1["charges"][0]["features"] = {"mechanism": "mystery", "epsilon": 1.0}
    (folder / "privacy_ledger.json").write_text(json.dumps(v1))
    with pytest.raises(LedgerError, match="cannot be migrated"):
        PrivacyLedger.load(tmp_path, "user-a")


def test_a_device_past_its_budget_uploads_nothing_and_says_so(tmp_path):
    store = LocalStore(tmp_path / "store")
    devices = tmp_path / "devices"
    user = synthetic_fleet(HAR, 1, windows_per_class=6)[0]
    policy = SharingPolicy(forms=["dp"], epsilon_features=2.0, epsilon_labels=0.5, user_budget_epsilon=6.0)
    first = sharing.share_user(store, user, 1.0, KEY, batch_size=64, policy=policy, ledger_dir=devices)
    spent = PrivacyLedger.load(devices, user.user_id).spent(policy.delta)
    assert 0 < first.windows < len(user) and spent <= 6.0
    before = sorted(store.list("incoming/"))
    # a later day: the user is at the budget; nothing new goes out, and the device says why
    offered = synthetic_fleet(HAR, 1, windows_per_class=12, seed=1)[0]
    offered.user_id = user.user_id
    offered.window_keys = [f"9:{i}" for i in range(len(offered))]  # new windows, never charged
    later = sharing.share_user(store, offered, 1.0, KEY, batch_size=64, policy=policy, ledger_dir=devices)
    assert later.windows == 0 and not later.written
    assert sorted(store.list("incoming/")) == before
    assert later.withheld == len(offered)
    assert len(later.refusals) == 1 and "privacy budget reached" in later.refusals[0]
    assert user.user_id not in later.refusals[0]
    assert PrivacyLedger.load(devices, user.user_id).spent(policy.delta) == pytest.approx(spent)


def _training_rows(users, policy: SharingPolicy):
    """What the server trains on when every user shares all it can afford (each with a fresh ledger)."""
    tables = [sharing.batch_table(u, sharing.shared_rows(u, 1.0, policy, KEY, PrivacyLedger(u.user_id)), KEY, "k1", policy)
              .replace_schema_metadata(None) for u in users]
    return pa.concat_tables(tables).to_pandas()


def test_manifest_states_the_per_user_guarantee_of_the_training_rows():
    users = synthetic_fleet(HAR, 3, windows_per_class=4)
    policy = SharingPolicy(forms=["dp"], epsilon_features=1.0, epsilon_labels=0.5, user_budget_epsilon=12.0)
    frame = _training_rows(users, policy)
    stated = data_guarantee(frame, {policy.name: policy.public_dict(HAR)}, 6)
    ledgers = []
    for n in frame.groupby("pseudonym").size():
        ledger = PrivacyLedger(user="u")
        ledger.charge(policy, [f"w{i}" for i in range(n)], 6)
        ledgers.append(ledger.spent(policy.delta))
    assert stated["epsilon_max"] == pytest.approx(max(ledgers)) and stated["epsilon_max"] <= 12.0
    assert stated["delta"] == policy.delta and stated["users"] == 3 and stated["users_without_dp"] == 0
    plain = data_guarantee(frame.assign(policy="pseudonymized/v1"), {}, 6)
    assert plain["epsilon_max"] is None and "no formal DP guarantee" in plain["statement"]
