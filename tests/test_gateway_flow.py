"""The real door end to end over HTTP on 127.0.0.1: the fleet shares through the gateway (`tandem share
--via`), then the train-and-release flow publishes a release trained on exactly those batches; once
with the local store, once with moto's S3 server behind the gateway (and a presigned upload)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import httpx
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem import task as tasks
from tandem.data import table as accepted_table
from tandem.data.store import store_from_settings
from tandem.fleet import devices
from tandem.fleet import users as fleet
from tandem.fleet.gateway_client import Device
from tandem.fleet.sharing import batch_table, table_bytes
from tandem.gateway.server import ThreadedGateway
from tandem.privacy.policy import load_policy
from tandem.settings import Settings
from tests.flow_helpers import run_flow


def _accepted_rows(store) -> pa.Table:
    return accepted_table.open_table(store).to_pyarrow_table()


def test_share_via_the_gateway_then_run_publishes_on_those_batches(tandem_home):
    """What `make demo` runs: `tandem share --via embedded` (a gateway in the share's own process, over
    loopback HTTP); the same devices again through a gateway server land nothing; then the flow."""
    settings = Settings()
    store = store_from_settings(settings)
    env = {**os.environ, "TANDEM_HOME": str(tandem_home)}
    cmd = [sys.executable, "-m", "tandem.cli", "share", "--source", "synthetic", "--users", "8", "--batch-size", "16",
           "--fraction", "0.8", "--holdout-every", "4", "--via", "embedded"]
    share = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert share.returncode == 0, share.stdout + share.stderr
    assert "through the device gateway at http://127.0.0.1:" in share.stdout
    landed = store.list("incoming/")
    assert landed and len(store.list("gateway/idempotency/")) == len(landed)  # every batch came through the door
    assert len(store.list("gateway/installs/")) == 6  # 8 users, every 4th never shares
    with ThreadedGateway(settings, store) as gw:  # the same devices (their install keys kept) share again
        again = devices.share_fleet(settings, store, fleet.load_fleet(tasks.resolve("har"), "synthetic", n_users=8, seed=0), fraction=0.8,
                                    holdout_every=4, batch_size=16, policy=load_policy("pseudonymized"), via=gw.url)
    assert again.report.written == [] and sorted(again.report.already_there) == landed
    assert store.list("incoming/") == landed and len(store.list("gateway/installs/")) == 6
    first = run_flow()
    assert first["status"] == "published", first
    assert first["accepted"] == first["new_batches"] == len(landed) and first["quarantined"] == 0
    batch_ids = set(_accepted_rows(store).column(accepted_table.BATCH_ID).to_pylist())
    assert len(batch_ids) == len(landed)


def test_identical_content_through_either_door_is_identical_rows(tandem_home, tmp_path, monkeypatch):
    """The same users' windows shared directly and through the gateway, each into its own store and
    ingested: the two tables hold the same rows."""
    from tandem import pipeline

    users = fleet.synthetic_fleet(tasks.resolve("har"), 4, windows_per_class=6, seed=5)
    tables = {}
    for door in ("direct", "gateway"):
        monkeypatch.setenv("TANDEM_HOME", str(tmp_path / door))
        settings = Settings()
        store = store_from_settings(settings)
        kwargs = dict(fraction=1.0, holdout_every=4, batch_size=8, policy=load_policy("pseudonymized"))
        if door == "gateway":
            with ThreadedGateway(settings, store) as gw:
                devices.share_fleet(settings, store, users, via=gw.url, **kwargs)
        else:
            devices.share_fleet(settings, store, users, **kwargs)
        summary = pipeline.ingest_new(pipeline.Context(settings))
        assert summary["quarantined"] == 0 and summary["accepted"] > 0, summary
        tables[door] = _accepted_rows(store).sort_by([("window_id", "ascending")])
    assert tables["direct"].num_rows == tables["gateway"].num_rows > 0
    assert tables["direct"].equals(tables["gateway"])


@pytest.mark.usefixtures("tandem_home")
def test_through_the_gateway_on_s3_with_a_presigned_upload(s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("TANDEM_STORE", f"s3://{s3_bucket}/store")
    monkeypatch.setenv("TANDEM_S3_ENDPOINT_URL", s3_endpoint)
    settings = Settings()
    store = store_from_settings(settings)
    users = fleet.synthetic_fleet(tasks.resolve("har"), 8, windows_per_class=10, seed=1)
    with ThreadedGateway(settings, store) as gw:
        shared = devices.share_fleet(settings, store, users, fraction=0.8, holdout_every=4, batch_size=16,
                                     policy=load_policy("pseudonymized"), via=gw.url)
        # one more batch the large-fleet way: the gateway presigns, the bytes go straight to the bucket
        d = Device(gw.url, ec.generate_private_key(ec.SECP256R1()))
        d.enroll()
        extra = table_bytes(batch_table(users[0], list(range(8)), b"presigned-device-key", "k1"))
        body = json.dumps({"client_batch_id": "presigned-1", "bytes": len(extra)}).encode()
        grant = d.request("POST", "/v1/uploads", body, {"Content-Type": "application/json"})
        assert grant.status_code == 200, grant.text
        grant = grant.json()
        assert grant["key"].startswith("incoming/dt=") and f"/{d.install_id[:16]}/" in grant["key"]
        # the signed policy S3 enforces (moto accepts the form but does not enforce the range: checked here)
        policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
        assert ["content-length-range", 1, len(extra)] in policy["conditions"]
        assert {"key": f"store/{grant['key']}"} in policy["conditions"] and grant["expires_in"] <= 300
        posted = httpx.post(grant["url"], data=grant["fields"], files={"file": ("batch.parquet", extra)})
        assert posted.status_code in (200, 204), posted.text
    assert store.get(grant["key"]) == extra
    first = run_flow()
    assert first["status"] == "published", first
    assert first["accepted"] == len(shared.report.written) + 1 and first["quarantined"] == 0

