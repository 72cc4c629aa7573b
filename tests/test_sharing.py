"""The devices' upload: pseudonymized, deterministic, create-only; for whichever task the users were
recorded for (new tasks made here from `tandem init`'s templates, not only the built-ins), with the
sharing forms a registry."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tandem import task as tasks
from tandem.contract import schema
from tandem.data.store import LocalStore
from tandem.data.validation import suites
from tandem.fleet import devices
from tandem.fleet import users as users_module
from tandem.fleet.sharing import batch_table, share, share_user, shared_mask
from tandem.fleet.users import split_users, synthetic_fleet
from tandem.privacy import forms, policy
from tandem.privacy.policy import SharingPolicy, load_policy
from tandem.privacy.pseudonyms import pseudonymize
from tests.task_templates import new_task

HAR = tasks.resolve("har")


def _only_batch(store: LocalStore):
    (key,) = store.list("incoming/")
    return pq.read_table(io.BytesIO(store.get(key)))


def test_sharing_twice_writes_nothing_new(tmp_path):
    store = LocalStore(tmp_path)
    users, _ = split_users(synthetic_fleet(HAR, 5, windows_per_class=4), holdout_every=5)
    first = share(store, users, 0.5, b"key", batch_size=8)
    again = share(store, users, 0.5, b"key", batch_size=8)
    assert first.written and not again.written
    assert sorted(again.already_there) == sorted(first.written)
    assert len(store.list("incoming/")) == len(first.written)


def test_batches_carry_pseudonyms_not_user_ids(tmp_path):
    store = LocalStore(tmp_path)
    user = synthetic_fleet(HAR, 1, windows_per_class=4)[0]
    share(store, [user], 1.0, b"secret-key")
    table = pq.read_table(io.BytesIO(store.get(store.list("incoming/")[0])))
    assert table.schema.equals(schema.of(HAR).schema, check_metadata=False)
    assert set(table.column("pseudonym").to_pylist()) == {pseudonymize(user.user_id, b"secret-key")}
    raw = b"".join(store.get(k) for k in store.list())
    assert user.user_id.encode() not in raw


def test_shared_fraction_is_stable_and_close_to_requested():
    user = synthetic_fleet(HAR, 1, windows_per_class=50)[0]
    mask = shared_mask(user, 0.3)
    assert (mask == shared_mask(user, 0.3)).all()
    assert 0.2 < mask.mean() < 0.4
    assert not shared_mask(user, 0.0).any() and shared_mask(user, 1.0).all()


def test_one_process_shares_two_tasks_one_after_the_other(tmp_path):
    """Issue 17: the task was an import-time global, so a process could serve one task only. Users
    recorded for two tasks share here one after the other, each in its own task's batch format."""
    three = new_task(tmp_path, "sensor-classification", "three-moves", target={"labels": ["still", "walk", "run"]})
    for task in (HAR, three, HAR):
        store = LocalStore(tmp_path / f"store-{task.name}-{len(list(tmp_path.iterdir()))}")
        user = synthetic_fleet(task, 1, windows_per_class=3)[0]
        share(store, [user], 1.0, b"key", batch_size=1000)
        table = _only_batch(store)
        assert table.schema.equals(schema.of(task).schema, check_metadata=False)
        assert table.schema.metadata[schema.TASK_METADATA] == task.tag.encode()
        assert set(table.column("label").to_pylist()) == set(task.target.labels)


def test_a_teams_own_quasi_identifier_is_shared_and_generalized(tmp_path):
    """Issue 17: a quasi-identifier the team names itself (``region``) passed validation, then crashed
    `share` (KeyError: 'region'). It is shared plain, and suppressed on the device when anonymized."""
    task = new_task(tmp_path, "tabular-classification", "with-region", quasi_identifiers=["device_model", "region"])
    user = synthetic_fleet(task, 1, windows_per_class=2)[0]
    plain = batch_table(user, np.arange(len(user)), b"key", "k1")
    assert plain.column("region").to_pylist() == [user.device["region"]] * len(user)
    anonymized = batch_table(user, np.arange(len(user)), b"key", "k1", load_policy("anonymized"))
    assert set(anonymized.column("region").to_pylist()) == {"*"}  # no hierarchy known: suppressed
    assert set(anonymized.column("device_model").to_pylist()) == {"iPhone14"}  # the known hierarchy, one level
    assert "locale" not in anonymized.column_names
    suite = suites.build_form_suite("anonymized", task)  # validation knows what a generalized region is
    assert {e.column for e in suite.expectations} >= {"device_model", "region"}
    assert SharingPolicy(device_levels={"region": 1}).device_levels["region"] == 1
    with pytest.raises(ValueError, match="region: device level"):
        SharingPolicy(device_levels={"region": 2})  # a column without a hierarchy has one level above plain


def test_dp_refuses_a_numeric_target_in_one_line(tmp_path):
    task = new_task(tmp_path, "tabular-regression", "effort")
    user = synthetic_fleet(task, 1, windows_per_class=3)[0]
    with pytest.raises(ValueError, match="numeric target"):
        share_user(LocalStore(tmp_path / "store"), user, 1.0, b"key", policy=load_policy("dp"), ledger_dir=tmp_path)
    assert not (tmp_path / "store").exists() or not LocalStore(tmp_path / "store").list("incoming/")


def test_dp_randomizes_over_the_tasks_own_classes(tmp_path):
    """A 3-class task's dp form: 3-ary randomized response, charged as such, labels among its classes."""
    task = new_task(tmp_path, "sensor-classification", "three", target={"labels": ["a", "b", "c"]})
    dp = load_policy("dp")
    public = dp.public_dict(task)
    assert public["mechanism"]["labels"] == "3-ary randomized response"
    assert dp.window_events(3)[1] == {"mechanism": "randomized_response", "epsilon": dp.epsilon_labels, "classes": 3}
    assert set(public["clip_bounds"]) == set(schema.of(task).feature_names)
    user = synthetic_fleet(task, 1, windows_per_class=40)[0]
    shared = batch_table(user, np.arange(len(user)), b"key", "k1", SharingPolicy(forms=["dp"], epsilon_labels=0.1))
    labels = np.array(shared.column("label").to_pylist())
    assert set(labels) == {"a", "b", "c"} and (labels != user.labels).mean() > 0.3  # randomized, within the classes


def test_evaluation_devices_read_back_as_their_task_says(tmp_path):
    """Held-out users' device data: a regressor's targets come back as numbers, a classifier's as names."""
    for task, dtype in ((new_task(tmp_path, "tabular-regression", "effort"), np.float64), (HAR, np.str_)):
        home = tmp_path / f"home-{task.name}"
        users = synthetic_fleet(task, 2, windows_per_class=3)
        devices.write_evaluation_devices(home, users, b"key")
        back = devices.load_evaluation(home, task)
        assert [u.user_id for u in back] == [u.user_id for u in users]
        assert back[0].labels.dtype.type is dtype
        np.testing.assert_array_equal(np.sort(back[0].labels), np.sort(users[0].labels))


def test_sharing_forms_are_one_registry():
    """Every form is one module registered once; the policy's names, the suites and the ingest read it."""
    assert policy.FORMS == tuple(forms.FORMS) == ("pseudonymized", "anonymized", "dp", "encrypted")
    assert all(form.name == name for name, form in forms.FORMS.items())
    assert suites.FORM_SUITES == tuple(name for name, form in forms.FORMS.items() if form.suite)
    assert [name for name, form in forms.FORMS.items() if form.sealed] == ["encrypted"]
    assert [name for name, form in forms.FORMS.items() if form.enforces_k] == ["anonymized"]
    assert [name for name, form in forms.FORMS.items() if form.charged] == ["dp"]
    assert load_policy("all").sealed and load_policy("all").charged
    assert not load_policy("anonymized").sealed and not load_policy("encrypted").charged
    assert load_policy("all").window_events(6) == forms.FORMS["dp"].window_events(load_policy("all"), 6)


def test_a_user_without_its_task_is_refused_in_one_line():
    user = synthetic_fleet(HAR, 1, windows_per_class=1)[0]
    user.task = None
    with pytest.raises(ValueError, match="without its task"):
        batch_table(user, np.arange(1), b"key", "k1")


def test_a_tables_drops_are_counted_and_shift_no_held_out_user(tmp_path):
    """Issue 17: rows with a NaN, labels outside the declared classes and users left with nothing were
    dropped without a word, and a dropped user shifted who is held out. A tabular task with repeated
    values (every user has the same inputs): what is dropped is counted, and the held-out users are the
    same with or without the broken user."""
    task = new_task(tmp_path, "tabular-classification", "workouts")
    rows = [{"user": f"u{u}", "date": d, "duration_min": 30.0 + d, "distance_km": 5.0, "climb_m": 100.0,
             "label": ["easy", "moderate", "hard"][d % 3]} for u in range(10) for d in range(6)]
    rows[0]["distance_km"] = float("nan")  # one broken row of u0
    rows[7]["label"] = "extreme"  # a label the task does not declare (u1)
    for r in rows:
        if r["user"] == "u3":
            r["climb_m"] = float("nan")  # u3: nothing usable left
    pd.DataFrame(rows).to_csv(task.folder / "data.csv", index=False)
    dropped = users_module.Dropped()
    fleet = users_module.task_fleet(task, dropped=dropped)
    assert dropped.nan_rows == 1 + 6 and dropped.undeclared == {"extreme": 1} and dropped.users == ["u3"]
    assert any("not one of the task's classes ('extreme': 1)" in line for line in dropped.lines())
    _, held_out = split_users(fleet, holdout_every=5)
    assert [u.user_id for u in held_out] == ["user-u4", "user-u9"]  # u3's absence moves no one
    assert all(u.task is task for u in fleet)
