"""The devices' upload: pseudonymized, deterministic, create-only."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from tandem.contract.schema import BATCH_SCHEMA
from tandem.data.store import LocalStore
from tandem.fleet.sharing import share, shared_mask
from tandem.fleet.users import split_users, synthetic_fleet
from tandem.privacy.pseudonyms import pseudonymize


def test_sharing_twice_writes_nothing_new(tmp_path):
    store = LocalStore(tmp_path)
    users, _ = split_users(synthetic_fleet(5, windows_per_class=4), holdout_every=5)
    first = share(store, users, 0.5, b"key", batch_size=8)
    again = share(store, users, 0.5, b"key", batch_size=8)
    assert first.written and not again.written
    assert sorted(again.already_there) == sorted(first.written)
    assert len(store.list("incoming/")) == len(first.written)


def test_batches_carry_pseudonyms_not_user_ids(tmp_path):
    store = LocalStore(tmp_path)
    user = synthetic_fleet(1, windows_per_class=4)[0]
    share(store, [user], 1.0, b"secret-key")
    table = pq.read_table(io.BytesIO(store.get(store.list("incoming/")[0])))
    assert table.schema.equals(BATCH_SCHEMA, check_metadata=False)
    assert set(table.column("pseudonym").to_pylist()) == {pseudonymize(user.user_id, b"secret-key")}
    raw = b"".join(store.get(k) for k in store.list())
    assert user.user_id.encode() not in raw


def test_shared_fraction_is_stable_and_close_to_requested():
    user = synthetic_fleet(1, windows_per_class=50)[0]
    mask = shared_mask(user, 0.3)
    assert (mask == shared_mask(user, 0.3)).all()
    assert 0.2 < mask.mean() < 0.4
    assert not shared_mask(user, 0.0).any() and shared_mask(user, 1.0).all()
