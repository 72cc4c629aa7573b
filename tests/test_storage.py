"""Both store backends honour the same contract; S3 is moto's server over HTTP."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from tandem.data import store_keys
from tandem.data.store import LocalStore, NotFound, S3Store, open_store

PACKAGE = Path(__file__).resolve().parents[1] / "tandem"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/some/prefix", endpoint_url=endpoint)


def test_put_get_list_roundtrip(store):
    store.put("incoming/a/1.parquet", b"one")
    store.put("incoming/b/2.parquet", b"two")
    store.put("ledger/batches/1.json", b"{}")
    assert store.get("incoming/a/1.parquet") == b"one"
    assert store.list("incoming/") == ["incoming/a/1.parquet", "incoming/b/2.parquet"]
    assert store.list("incoming/a") == ["incoming/a/1.parquet"]
    assert "ledger/batches/1.json" in store.list()
    assert store.exists("incoming/a/1.parquet") and not store.exists("incoming/a/2.parquet")


def test_missing_key_raises_not_found(store):
    with pytest.raises(NotFound):
        store.get("nope/missing.json")


def test_if_absent_is_create_only(store):
    assert store.put("releases/m/1/model.mlmodel", b"first", if_absent=True)
    assert not store.put("releases/m/1/model.mlmodel", b"second", if_absent=True)
    assert store.get("releases/m/1/model.mlmodel") == b"first"


def test_racing_create_only_writes_have_one_winner(store):
    wins = []

    def attempt(i):
        if store.put("ledger/batches/race.json", f"{i}".encode(), if_absent=True):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("ledger/batches/race.json") == str(wins[0]).encode()


def test_keys_cannot_escape_the_store(store):
    with pytest.raises(ValueError):
        store.put("../outside", b"x")


def test_s3_layout_matches_local_layout(tmp_path, s3_endpoint, s3_bucket):
    local, s3 = LocalStore(tmp_path / "s"), S3Store(s3_bucket, "p", endpoint_url=s3_endpoint)
    for st in (local, s3):
        st.put("channels/m/staging.json", b"{}")
        st.put("releases/m/3/manifest.json", b"{}")
    assert local.list() == s3.list()


# The store's layout as deployed stores hold it: a prefix that moved would orphan their data.
LAYOUT = {"INCOMING": "incoming/", "LEDGER": "ledger/batches/", "CURSORS": "ledger/days/",
          "REVOCATIONS": "ledger/revocations/", "ERASURES": "ledger/erasures/", "TRAINED": "ledger/trained/",
          "QUARANTINE": "quarantine/", "TABLE": "table/accepted", "POLICIES": "table/policies/", "DATASETS": "datasets/",
          "REFERENCE": "reference/", "RELEASES": "releases/", "CHANNELS": "channels/", "LOCKS": "locks/",
          "GATEWAY": "gateway/", "TASK_RECORD": "task.json"}


def test_store_keys_names_every_prefix_and_no_path_moved():
    named = {k: v for k, v in vars(store_keys).items() if k.isupper() and isinstance(v, str)}
    assert named == LAYOUT


def test_no_module_but_store_keys_defines_a_store_prefix():
    """Issue 17: the store's key prefixes were 15 constants in 9 modules; a new one goes in store_keys.py."""
    roots = {v.split("/")[0] for v in LAYOUT.values()}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "data" / "store_keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                value = node.value.value
                if value in LAYOUT.values() or ("/" in value and value.split("/")[0] in roots):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {value!r}")
    assert not offenders, "store prefixes belong in tandem/data/store_keys.py: " + "; ".join(offenders)
