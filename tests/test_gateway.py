"""The device gateway over real HTTP on 127.0.0.1 (uvicorn in a thread, a real local store): enrollment,
signed uploads in wire format v1, every bad input refused with a 4xx and a one-line reason and the
landing zone unchanged, limits across two replicas, idempotency, releases for apps, App Attest."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import time
import uuid

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem import task as tasks
from tandem.contract import request_signing as signing
from tandem.contract import wire
from tandem.data.store import LocalStore, sha256_hex
from tandem.fleet import users as fleet
from tandem.fleet.gateway_client import Device, GatewayRefused, wire_body
from tandem.fleet.sharing import batch_table, share_user, table_bytes
from tandem.gateway.server import ThreadedGateway
from tandem.privacy import sealing
from tandem.privacy.policy import load_policy
from tandem.settings import Settings
from tests.task_templates import new_task

LIMITS = dict(gateway_max_body_bytes=120_000, gateway_max_install_batches_per_day=3, max_pseudonym_batches_per_day=4,
              max_batch_rows=40)
SEAL = ("e1", bytes(range(32)))
TASK = tasks.resolve("har")  # what the gateway serves: Settings().task
COLUMNS = wire.columns(TASK)


@pytest.fixture(scope="module")
def users():
    return fleet.synthetic_fleet(TASK, 4, windows_per_class=10, seed=3)


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    home = tmp_path_factory.mktemp("gw")
    settings = Settings(home=home, encryption_key=SEAL[1].hex(), encryption_key_id=SEAL[0], **LIMITS)
    store = LocalStore(home / "store")
    with ThreadedGateway(settings, store) as gw:
        yield gw, store, settings


def table_for(user, rows=range(8), key: bytes | None = None, policy="pseudonymized"):
    """A batch of a fresh pseudonym each time (a fresh HMAC key): tests never share a daily count."""
    return batch_table(user, np.array(list(rows)), key or uuid.uuid4().bytes, "k1", load_policy(policy))


def landing(store) -> dict:
    return {k: sha256_hex(store.get(k)) for k in store.list("incoming/")}


def device(gw) -> Device:
    d = Device(gw.url, ec.generate_private_key(ec.SECP256R1()))
    d.enroll()
    return d


def post(d: Device, body: bytes, headers: dict | None = None, path="/v1/batches", sign_body: bytes | None = None,
         **sign_kwargs) -> httpx.Response:
    signed = signing.sign(d.key, "POST", path, body if sign_body is None else sign_body, **sign_kwargs)
    hdrs = {"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip", **(headers or {}), **signed}
    return d.client.post(d.url + path, content=body, headers=hdrs)


def refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert "\n" not in detail and words in detail, detail


def gz_json(doc) -> bytes:
    return gzip.compress(json.dumps(doc).encode())


def doc_of(table, client_id="b1") -> dict:
    return json.loads(wire.encode(table, client_id, "2026-12-03T00:00:00Z",
                                  json.loads(table.schema.metadata[b"tandem.policy"])))


# --- what lands ---------------------------------------------------------------------------------------

def test_a_wire_batch_lands_as_the_simulators_exact_parquet(door, users, tmp_path):
    gw, store, _ = door
    key = uuid.uuid4().bytes
    direct = LocalStore(tmp_path / "direct")
    expected = share_user(direct, users[0], 0.8, key, "k1", 16)
    through = share_user(store, users[0], 0.8, key, "k1", 16, ledger_dir=tmp_path / "devices", via=gw.url)
    assert [k.rsplit("/", 2)[1:] for k in through.written] == [k.rsplit("/", 2)[1:] for k in expected.written]
    for mine, theirs in zip(through.written, expected.written):
        assert store.get(mine) == direct.get(theirs)  # same bytes: same rows, same policy metadata, same key
    again = share_user(store, users[0], 0.8, key, "k1", 16, ledger_dir=tmp_path / "devices", via=gw.url)
    assert again.written == [] and len(again.already_there) == len(expected.written)


def test_floats_round_trip_bit_for_bit(door, users):
    gw, store, _ = door
    table = table_for(users[1])
    tricky = [0.1, 1 / 3, -2.5e-308, 5e-324, 1.7976931348623157e308, -0.0, 123456789.12345679]
    col = table.column_names.index(table.schema.names[4])
    values = table.column(col).to_pylist()
    values[: len(tricky)] = tricky
    table = table.set_column(col, table.schema.field(col), [values])
    answer = device(gw).upload(table, "floats")
    landed = pq.read_table(store.root / answer["batch"]).column(col).to_pylist()
    assert [np.float64(v).tobytes() for v in landed] == [np.float64(v).tobytes() for v in values]


def test_a_sealed_batch_lands_sealed_and_opens_to_the_simulators_parquet(door, users):
    gw, store, _ = door
    table = table_for(users[2], policy="encrypted")
    answer = device(gw).upload(table, "sealed-1", seal_with=SEAL)
    assert answer["status"] == "landed" and answer["batch"].endswith(".sealed")
    plain, header = sealing.open_sealed(store.get(answer["batch"]), {SEAL[0]: SEAL[1]})
    assert header["key_id"] == SEAL[0] and plain == table_bytes(table)


def test_an_idempotent_retry_lands_once_and_reused_ids_with_other_bytes_are_refused(door, users):
    gw, store, _ = door
    d = device(gw)
    table = table_for(users[3])
    first = d.upload(table, "retry-me")
    before = landing(store)
    second = d.upload(table, "retry-me")  # re-signed (fresh nonce), same bytes
    assert first["status"] == "landed" and second["status"] == "already landed" and second["batch"] == first["batch"]
    assert landing(store) == before
    body, headers = wire_body(table_for(users[3], rows=range(8, 12)), "retry-me")
    refused(post(d, body, {**headers, "Idempotency-Key": "retry-me"}), 409, "different bytes")
    assert landing(store) == before


# --- bad input: 4xx, one line, landing zone unchanged -------------------------------------------------

def bad_bodies(table):
    good = wire.encode(table, "bad", "2026-12-03T00:00:00Z", json.loads(table.schema.metadata[b"tandem.policy"]))
    doc = json.loads(good)
    lying = json.loads(good)
    lying["header"]["row_count"] += 1
    nan = json.loads(good)
    nan["columns"][COLUMNS[3]][0] = "NaN"
    inf = good.replace(json.dumps(doc["columns"][COLUMNS[3]][0]).encode(), b"1e999", 1)
    other = json.loads(good)
    other["header"]["task"] = "grunfeld/v1+000000000000" if TASK.name != "grunfeld" else "har/v1+000000000000"
    return {
        "not gzip": (b"this is not gzip", 400, "not valid gzip"),
        "truncated gzip": (gzip.compress(good)[:-20], 400, "truncated"),
        "malformed JSON": (gzip.compress(b'{"format": "tandem.batch/v1", "header": {'), 400, "not valid JSON"),
        "truncated JSON": (gzip.compress(good[: len(good) // 2]), 400, "not valid JSON"),
        "lying row count": (gz_json(lying), 400, "row_count says"),
        "NaN": (gz_json(nan), 400, "NaN or infinity"),
        "inf": (gzip.compress(inf), 400, "NaN or infinity"),
        "another task": (gz_json(other), 400, "made under task"),
        "not an object": (gz_json([1, 2]), 400, "JSON object"),
    }


@pytest.mark.parametrize("case", ["not gzip", "truncated gzip", "malformed JSON", "truncated JSON", "lying row count",
                                  "NaN", "inf", "another task", "not an object"])
def test_bad_bodies_are_refused_with_a_reason(door, users, case):
    gw, store, _ = door
    body, status, words = bad_bodies(table_for(users[0]))[case]
    before = landing(store)
    refused(post(device(gw), body), status, words)
    assert landing(store) == before


def test_wrong_content_type_and_missing_gzip_are_415(door, users):
    gw, store, _ = door
    d, before = device(gw), landing(store)
    body, _ = wire_body(table_for(users[0]), "ct")
    refused(post(d, body, {"Content-Type": "application/json"}), 415, "Content-Type must be")
    refused(post(d, body, {"Content-Encoding": "identity"}), 415, "Content-Encoding: gzip")
    assert landing(store) == before


def test_bodies_over_the_limit_declared_or_streamed_are_413(door, users):
    gw, store, settings = door
    d, before = device(gw), landing(store)
    big = b"\0" * (settings.gateway_max_body_bytes + 1)
    refused(post(d, big), 413, "declared")

    def chunks():  # no Content-Length: httpx sends it chunked
        for _ in range(0, len(big), 8192):
            yield big[:8192]
    signed = signing.sign(d.key, "POST", "/v1/batches", big)
    r = d.client.post(d.url + "/v1/batches", content=chunks(),
                      headers={"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip", **signed})
    refused(r, 413, "while streaming")
    too_many_rows = table_for(users[0], rows=range(LIMITS["max_batch_rows"] + 1))
    body, _ = wire_body(too_many_rows, "rows")
    refused(post(d, body), 413, "rows, the limit is")
    assert landing(store) == before


def test_signature_problems_are_401(door, users):
    gw, store, settings = door
    d, before = device(gw), landing(store)
    body, _ = wire_body(table_for(users[1]), "sig")
    stranger = Device(gw.url, ec.generate_private_key(ec.SECP256R1()))
    refused(post(stranger, body), 401, "unknown install")
    forged = signing.sign(ec.generate_private_key(ec.SECP256R1()), "POST", "/v1/batches", body)
    forged[signing.INSTALL] = d.install_id  # claims to be d, signed by someone else
    r = d.client.post(d.url + "/v1/batches", content=body,
                      headers={"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip", **forged})
    refused(r, 401, "bad signature")
    refused(post(d, body, sign_body=body + b"x"), 401, "does not match the body")
    refused(post(d, body, now=time.time() - settings.gateway_max_skew_seconds - 60), 401, "stale timestamp")
    refused(d.client.post(d.url + "/v1/batches", content=body, headers={"Content-Type": wire.CONTENT_TYPE,
                                                                          "Content-Encoding": "gzip"}), 401, "unsigned")
    assert landing(store) == before
    ok = post(d, body, nonce="replay-me-0123456789")
    assert ok.status_code == 201, ok.text
    after = landing(store)
    refused(post(d, body, nonce="replay-me-0123456789"), 401, "replayed")
    retry = post(d, body)  # re-signed, no Idempotency-Key: the header's client_batch_id is the key
    assert retry.status_code == 200 and retry.json()["status"] == "already landed"
    assert landing(store) == after


def test_daily_limits_answer_429_with_retry_after(door, users):
    gw, store, _ = door
    d = device(gw)
    for i in range(LIMITS["gateway_max_install_batches_per_day"]):
        d.upload(table_for(users[2]), f"day-{i}")
    before = landing(store)
    body, _ = wire_body(table_for(users[2]), "one-more")
    r = post(d, body)
    refused(r, 429, "this install has landed its 3 batches")
    assert 0 < int(r.headers["Retry-After"]) <= 86401
    key = uuid.uuid4().bytes  # one pseudonym from several installs
    for i in range(LIMITS["max_pseudonym_batches_per_day"]):
        device(gw).upload(table_for(users[2], rows=range(i * 2, i * 2 + 2), key=key), f"p-{i}")
    before = landing(store)
    body, _ = wire_body(table_for(users[2], rows=range(20, 22), key=key), "p-more")
    refused(post(device(gw), body), 429, "this pseudonym has landed its 4 batches")
    assert landing(store) == before


def test_two_replicas_on_one_store_keep_one_count(door, users):
    """Two gateway processes' worth of state (two apps, two servers) racing on one store: the
    pseudonym's daily count never passes its limit."""
    gw, store, settings = door
    key = uuid.uuid4().bytes
    with ThreadedGateway(settings, LocalStore(store.root)) as other:
        tables = [table_for(users[3], rows=range(i, i + 1), key=key) for i in range(10)]
        devices = [Device((gw if i % 2 else other).url, ec.generate_private_key(ec.SECP256R1())) for i in range(10)]
        for dv in devices:
            dv.enroll()
        statuses = []

        def send(i):
            body, headers = wire_body(tables[i], f"race-{i}")
            statuses.append(post(devices[i], body, headers).status_code)
        threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert sorted(statuses) == [201] * LIMITS["max_pseudonym_batches_per_day"] + [429] * (10 - LIMITS["max_pseudonym_batches_per_day"])
    pseudonym = tables[0].column("pseudonym")[0].as_py()
    assert len([k for k in store.list("incoming/") if f"/{pseudonym[:16]}/" in k]) == LIMITS["max_pseudonym_batches_per_day"]


def test_a_policy_that_says_encrypted_must_come_sealed(door, users):
    gw, store, _ = door
    before = landing(store)
    body, _ = wire_body(table_for(users[0], policy="encrypted"), "plain-enc")
    refused(post(device(gw), body), 400, "requires a sealed body")
    assert landing(store) == before


# --- releases for apps ----------------------------------------------------------------------------------

def test_an_app_finds_and_verifies_a_release(door):
    from tandem.release.layout import set_channel, write_release
    from tandem.release.signing import Signer, TrustedKeys, generate, load_private, load_public

    gw, store, settings = door
    private, public = generate()
    files = {"model.mlmodel": b"model bytes", "feature_spec.json": b"{}"}
    write_release(store, settings.model_name, 7, files, {"note": "test"}, Signer(load_private(private)))
    pointer = set_channel(store, settings.model_name, "staging", 7)
    found = httpx.get(f"{gw.url}/v1/releases/staging").json()
    manifest = base64.b64decode(found["manifest"])
    TrustedKeys.of([load_public(public)]).verify(manifest, base64.b64decode(found["signature"]))
    assert found["pointer"] == pointer and found["version"] == "7"
    for f in found["files"]:
        data = httpx.get(gw.url + f["url"]).content
        assert hashlib.sha256(data).hexdigest() == json.loads(manifest)["files"][f["name"]]["sha256"] == f["sha256"]
    assert httpx.get(f"{gw.url}/v1/releases/production").status_code == 404
    assert httpx.get(f"{gw.url}/v1/releases/{settings.model_name}/7/files/manifest.sig").status_code == 404
    assert httpx.get(f"{gw.url}/v1/releases/Bad..Name").status_code == 400


def test_task_route_names_the_wire_columns(door):
    gw, _, _ = door
    got = httpx.get(f"{gw.url}/v1/task").json()
    assert got["task"] == TASK.tag and list(got["columns"]) == list(COLUMNS)


def test_a_presigned_wire_upload_is_completed_into_the_same_batch(s3_endpoint, s3_bucket, users, tmp_path):
    """Large fleets: the bytes go straight to the bucket (moto over HTTP) under the install's staging
    prefix; completing it lands the simulator's exact parquet, and a broken one is refused and removed."""
    from tandem.data.store import S3Store

    store = S3Store(s3_bucket, "store", endpoint_url=s3_endpoint)
    settings = Settings(home=tmp_path, store=f"s3://{s3_bucket}/store", s3_endpoint_url=s3_endpoint)
    with ThreadedGateway(settings, store) as gw:
        d = device(gw)
        table = table_for(users[1])

        def staged(body: bytes, client_id: str) -> str:
            ask = json.dumps({"client_batch_id": client_id, "bytes": len(body), "kind": "wire"}).encode()
            grant = d.request("POST", "/v1/uploads", ask, {"Content-Type": "application/json"})
            assert grant.status_code == 200, grant.text
            grant = grant.json()
            assert grant["key"].startswith(f"gateway/uploads/{d.install_id}/")
            r = httpx.post(grant["url"], data=grant["fields"], files={"file": ("batch", body)})
            assert r.status_code in (200, 204), r.text
            return grant["key"]

        body, _ = wire_body(table, "presigned-wire")
        key = staged(body, "presigned-wire")
        done = d.request("POST", "/v1/uploads/complete", json.dumps({"key": key}).encode(),
                         {"Content-Type": "application/json"})
        assert done.status_code == 201, done.text
        assert store.get(done.json()["batch"]) == table_bytes(table) and not store.exists(key)
        before = landing(store)
        bad = staged(b"not gzip at all", "presigned-bad")
        r = d.request("POST", "/v1/uploads/complete", json.dumps({"key": bad}).encode(), {"Content-Type": "application/json"})
        refused(r, 400, "not valid gzip")
        assert landing(store) == before and not store.exists(bad)
        other = d.request("POST", "/v1/uploads/complete", json.dumps({"key": "incoming/x.parquet"}).encode(),
                          {"Content-Type": "application/json"})
        refused(other, 400, "not one /v1/uploads granted to this install")


def test_a_gateway_serves_the_task_its_settings_name(door, users, tmp_path):
    """Issue 17: the gateway read the task at import. It resolves the task its settings name when the
    app is made: here a 3-class team task, in the same process as the HAR gateway above; a HAR batch
    is refused there in one line, the team's own lands."""
    three = new_task(tmp_path, "sensor-classification", "three-moves", target={"labels": ["still", "walk", "run"]})
    settings = Settings(home=tmp_path / "home", task=str(three.folder), **LIMITS)
    store = LocalStore(tmp_path / "home" / "store")
    with ThreadedGateway(settings, store) as gw:
        got = httpx.get(f"{gw.url}/v1/task").json()
        assert got["task"] == three.tag and got["classes"] == ["still", "walk", "run"]
        assert list(got["columns"]) == list(wire.columns(three))
        d = Device(gw.url, ec.generate_private_key(ec.SECP256R1()))
        d.enroll()
        with pytest.raises(GatewayRefused, match="made under task"):
            d.upload(table_for(users[0]), "har-batch")
        theirs = fleet.synthetic_fleet(three, 1, windows_per_class=2)[0]
        answer = d.upload(batch_table(theirs, np.arange(4), uuid.uuid4().bytes, "k1"), "their-batch")
        assert answer["status"] == "landed" and store.list("incoming/") == [answer["batch"]]
    door_gw = door[0]
    assert httpx.get(f"{door_gw.url}/v1/task").json()["task"] == TASK.tag  # the HAR gateway still serves HAR
