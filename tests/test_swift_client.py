"""TandemClient (Swift) against the real gateway over HTTP on 127.0.0.1: a Swift-written wire batch
lands as exactly the parquet batch the Python simulator writes, a retried upload lands once (a real
HTTP proxy in front of the gateway loses the first answer: the fault a phone on a bad network sees),
`Retry-After` is honoured, and the dp form's privacy ledger refuses past the budget in Python's format."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.swift_build import run_device

N_WINDOWS = 70  # two batches of up to 64
USER = "swift-user-7"


def _har():
    """The task these devices record for (the gateway's default, `Settings().task`)."""
    from tandem import task as tasks

    return tasks.resolve("har")


def _user(seed: int):
    from tandem.contract import features
    from tandem.fleet.user_data import EPOCH, UserData, device_metadata

    har = features.of(_har())
    CHANNELS, CLASSES, WINDOW = har.channels, har.classes, har.window

    rng = np.random.default_rng(seed)
    windows = rng.normal(0.0, 0.4, size=(N_WINDOWS, WINDOW, len(CHANNELS)))
    windows[:, :, 0] += 1.0  # gravity on one axis, as a phone at rest
    order = rng.permutation(N_WINDOWS)  # capture order differs from file order: both sides sort
    captured = EPOCH + (order * 2560).astype("timedelta64[ms]")
    labels = np.array([CLASSES[i % len(CLASSES)] for i in range(N_WINDOWS)])
    return UserData(USER, windows, labels, [f"0:{64 * i}" for i in range(N_WINDOWS)], captured, device_metadata(1),
                    task=_har())


def _windows_file(path: Path, user, *, features: bool) -> Path:
    ms = user.captured_at.astype("datetime64[ms]").astype(np.int64)
    items = []
    for i in range(len(user)):
        item = {"key": user.window_keys[i], "captured_at": int(ms[i]), "label": str(user.labels[i])}
        item.update({"features": user.features[i].tolist()} if features else {"window": user.windows[i].tolist()})
        items.append(item)
    path.write_text(json.dumps({"user_id": user.user_id, "device": user.device, "windows": items}))
    return path


def _expected_batches(user, policy, key: bytes) -> dict[str, bytes]:
    """What the Python simulator uploads for all of the user's windows: {batch file name: parquet bytes}."""
    from tandem.fleet.sharing import batch_table, shared_rows, table_bytes

    rows = shared_rows(user, 1.0, policy, key)
    out = {}
    for start in range(0, len(rows), 64):
        table = batch_table(user, rows[start:start + 64], key, "k1", policy)
        import hashlib

        ids = "|".join(table.column("window_id").to_pylist())
        pseudonym = table.column("pseudonym")[0].as_py()
        out[hashlib.sha256(f"{pseudonym}|{ids}".encode()).hexdigest()[:24] + ".parquet"] = table_bytes(table)
    return out


class FlakyProxy:
    """A real HTTP proxy in front of the gateway that, for the first attempt of the first `fail` batches
    (by Idempotency-Key), forwards the request (so the gateway lands it) and then answers the phone 503
    instead of the gateway's answer, with `Retry-After`."""

    def __init__(self, upstream: str, fail: int, retry_after: str = "0", status: int = 503):
        proxy = self
        self.upstream, self.fail, self.retry_after, self.seen, self.failed = upstream, fail, retry_after, [], set()
        self.status = status

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST")
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "content-length", "connection"):
                        request.add_header(k, v)
                try:
                    with urllib.request.urlopen(request) as r:
                        status, payload = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                proxy.seen.append((self.path, status))
                key = self.headers.get("Idempotency-Key")
                if self.path == "/v1/batches" and proxy.fail > 0 and key not in proxy.failed:
                    proxy.fail -= 1
                    proxy.failed.add(key)
                    status, payload = proxy.status, b'{"detail": "upstream answer lost"}'
                self.send_response(status)
                if status == proxy.status:
                    self.send_header("Retry-After", proxy.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(tandem_home, monkeypatch):
    """The real gateway over HTTP on 127.0.0.1, with a sealing key (the app's and the server's)."""
    import secrets

    from tandem.data.store import store_from_settings
    from tandem.gateway.server import ThreadedGateway
    from tandem.settings import Settings

    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY", secrets.token_hex(32))
    monkeypatch.setenv("TANDEM_ENCRYPTION_KEY_ID", "e7")
    settings = Settings()
    store = store_from_settings(settings)
    with ThreadedGateway(settings, store) as gw:
        yield gw, store, settings


def _spec_and_policy(tmp_path: Path, policy) -> tuple[Path, Path]:
    from tandem.contract import features

    spec = tmp_path / "feature_spec.json"
    spec.write_text(json.dumps(features.of(_har()).feature_spec()))
    path = tmp_path / "policy.json"
    path.write_text(policy.public_json(_har()))
    return spec, path


def _assert_same_batches(landed: dict[str, bytes], expected: dict[str, bytes]) -> None:
    """The same batch names, and in each the same schema (metadata included), columns, then bytes."""
    assert sorted(landed) == sorted(expected)
    for name, data in expected.items():
        want, got = pq.read_table(pa_buffer(data)), pq.read_table(pa_buffer(landed[name]))
        assert got.schema.equals(want.schema, check_metadata=True), (got.schema.metadata, want.schema.metadata)
        for column in want.column_names:
            assert got.column(column).equals(want.column(column)), column
        assert landed[name] == data


def _landed(store) -> dict[str, bytes]:
    return {k.rsplit("/", 1)[1]: store.get(k) for k in store.list("incoming/")}


def _share(binary, gateway_url, spec, windows, policy, *extra, check=True):
    return run_device(binary, "share", "--gateway", gateway_url, "--spec", str(spec), "--windows", str(windows),
                      "--policy", str(policy), *extra, check=check)


def test_swift_batch_lands_as_the_python_simulators_bytes(tandem_device, gateway, tmp_path):
    """Features given (as a phone that featurized earlier): the landed parquet is byte for byte the
    simulator's, under the simulator's batch name; sharing again lands nothing new."""
    from tandem.privacy.policy import SharingPolicy

    gw, store, settings = gateway
    policy = SharingPolicy(forms=["anonymized"])
    user = _user(1)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    windows = _windows_file(tmp_path / "windows.json", user, features=True)
    done = _share(tandem_device, gw.url, spec, windows, policy_file)
    summary = json.loads(done.stdout)
    assert [b["status"] for b in summary["batches"]] == ["landed", "landed"]
    expected = _expected_batches(user, policy, settings.require_pseudonym_key())
    _assert_same_batches(_landed(store), expected)
    again = json.loads(_share(tandem_device, gw.url, spec, windows, policy_file).stdout)
    assert [b["status"] for b in again["batches"]] == ["already landed", "already landed"]
    assert _landed(store) == expected


def test_swift_sealed_batch_lands_sealed_with_the_simulators_plaintext(tandem_device, gateway, tmp_path):
    """The encrypted form: Swift seals the gzip body (TandemSecurity's container), the gateway opens it
    in memory and lands it sealed again under the same key id; opened, it is the simulator's parquet."""
    from tandem.privacy import sealing
    from tandem.privacy.policy import SharingPolicy

    gw, store, settings = gateway
    policy = SharingPolicy(forms=["encrypted"])
    user = _user(6)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    summary = json.loads(_share(tandem_device, gw.url, spec, _windows_file(tmp_path / "w.json", user, features=True),
                                policy_file).stdout)
    assert [b["status"] for b in summary["batches"]] == ["landed", "landed"]
    landed = _landed(store)
    assert all(name.endswith(".sealed") for name in landed)
    ring = sealing.keyring(settings)
    opened = {}
    for name, data in landed.items():
        plain, header = sealing.open_sealed(data, ring)
        assert header["key_id"] == "e7"
        opened[name.replace(".sealed", ".parquet")] = plain
    _assert_same_batches(opened, _expected_batches(user, policy, settings.require_pseudonym_key()))


def test_swift_featurized_windows_land_as_the_python_rows(tandem_device, gateway, tmp_path):
    """Raw windows featurized by TandemFeatures: the same batches and rows, features within 1e-9."""
    from tandem.contract import features
    from tandem.privacy.policy import SharingPolicy

    FEATURE_NAMES = features.of(_har()).feature_names

    gw, store, settings = gateway
    policy = SharingPolicy()
    user = _user(2)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    _share(tandem_device, gw.url, spec, _windows_file(tmp_path / "raw.json", user, features=False), policy_file)
    expected = _expected_batches(user, policy, settings.require_pseudonym_key())
    landed = _landed(store)
    assert sorted(landed) == sorted(expected)
    worst = 0.0
    for name, data in expected.items():
        want = pq.read_table(pa_buffer(data)).to_pandas()
        got = pq.read_table(pa_buffer(landed[name])).to_pandas()
        other = [c for c in want.columns if c not in FEATURE_NAMES]
        assert got[other].equals(want[other])
        worst = max(worst, float(np.abs(got[list(FEATURE_NAMES)].to_numpy() - want[list(FEATURE_NAMES)].to_numpy()).max()))
    print(f"Swift-featurized rows vs the simulator's: max |dx| = {worst:.3g}")
    assert worst <= 1e-9, f"features differ by up to {worst:.3g}"


def pa_buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(data)


def test_a_retried_upload_lands_once(tandem_device, gateway, tmp_path):
    """The first answer to each batch is lost after the gateway landed it: the client retries (re-signed,
    the same bytes and Idempotency-Key) and the gateway answers the first answer again; one object each."""
    from tandem.privacy.policy import SharingPolicy

    gw, store, settings = gateway
    policy = SharingPolicy()
    user = _user(3)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    windows = _windows_file(tmp_path / "windows.json", user, features=True)
    with FlakyProxy(gw.url, fail=2) as proxy:
        summary = json.loads(_share(tandem_device, proxy.url, spec, windows, policy_file).stdout)
    assert [(b["status"], b["attempts"]) for b in summary["batches"]] == [("already landed", 2), ("already landed", 2)]
    batches = [status for path, status in proxy.seen if path == "/v1/batches"]
    assert batches == [201, 200, 201, 200]  # each landed by the first attempt, answered idempotently to the retry
    assert _landed(store) == _expected_batches(user, policy, settings.require_pseudonym_key())


def test_retry_after_is_honoured_and_a_dead_gateway_is_one_line(tandem_device, gateway, tmp_path):
    import time

    from tandem.privacy.policy import SharingPolicy

    gw, store, _ = gateway
    policy = SharingPolicy()
    user = _user(4)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    windows = _windows_file(tmp_path / "windows.json", user, features=True)
    with FlakyProxy(gw.url, fail=1, retry_after="1") as proxy:
        started = time.monotonic()
        _share(tandem_device, proxy.url, spec, windows, policy_file)
        waited = time.monotonic() - started
    assert waited >= 1.0  # the client slept the gateway's Retry-After before retrying (a lower bound only)
    assert len(_landed(store)) == 2
    # a daily limit's Retry-After (hours) is not slept through: one line saying when to retry
    with FlakyProxy(gw.url, fail=1, retry_after="3600", status=429) as proxy:
        later = _share(tandem_device, proxy.url, spec, _windows_file(tmp_path / "w2.json", _user(8), features=True),
                       policy_file, check=False)
    assert later.returncode != 0 and len(later.stderr.strip().splitlines()) == 1
    assert "HTTP 429" in later.stderr and "retry after 3600 s" in later.stderr
    from tandem.gateway.server import free_port

    dead = _share(tandem_device, f"http://127.0.0.1:{free_port()}", spec, windows, policy_file, "--attempts", "2",
                  check=False)
    assert dead.returncode != 0
    lines = dead.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0]


def test_dp_ledger_refuses_past_the_budget_in_pythons_format(tandem_device, gateway, tmp_path):
    """Under dp, a budget of 55 admits 5 windows of epsilon 10 (basic composition); the rest are not
    shared and the device says so. The ledger is the Python device's file: Python reads it back."""
    from tandem.contract import features
    from tandem.privacy.ledger import PrivacyLedger
    from tandem.privacy.policy import SharingPolicy, clip_bounds

    CLASSES, FEATURE_NAMES = features.of(_har()).classes, features.of(_har()).feature_names
    gw, store, _ = gateway
    policy = SharingPolicy(forms=["dp"], user_budget_epsilon=55.0)
    user = _user(5)
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    windows = _windows_file(tmp_path / "windows.json", user, features=True)
    devices = tmp_path / "devices"
    done = _share(tandem_device, gw.url, spec, windows, policy_file, "--devices-dir", str(devices))
    summary = json.loads(done.stdout)
    assert (summary["windows"], summary["withheld"]) == (5, N_WINDOWS - 5)
    assert "privacy budget reached" in done.stderr and f"{N_WINDOWS - 5} window(s) not shared" in done.stderr
    ledger = PrivacyLedger.load(devices, USER)
    assert len(ledger.charges) == 5 and ledger.migrated_from is None
    assert {c["fingerprint"] for c in ledger.charges} == {policy.fingerprint()}
    (name, data), = _landed(store).items()
    table = pq.read_table(pa_buffer(data)).to_pandas()
    bounds = np.array(list(clip_bounds(_har()).values()))
    x = table[list(FEATURE_NAMES)].to_numpy()
    assert ((x >= bounds[:, 0]) & (x <= bounds[:, 1])).all()
    assert set(table["label"]) <= set(CLASSES) and (table["policy"] == policy.name).all()
    # sharing again: the charged windows go out again unchanged (same noise), nothing new is charged
    again = json.loads(_share(tandem_device, gw.url, spec, windows, policy_file, "--devices-dir", str(devices)).stdout)
    assert [b["status"] for b in again["batches"]] == ["already landed"]
    assert len(PrivacyLedger.load(devices, USER).charges) == 5


def test_the_xctests_fixtures_are_what_python_computes_today():
    """TandemClientTests compare against Fixtures/policy_fixtures.json: it must still be what the Python
    side computes (generalization, noise scales, clipping, identities, request signing)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "swift/Tests/TandemClientTests/Fixtures/make_fixtures.py"
    spec = importlib.util.spec_from_file_location("tandem_client_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = json.loads(module.OUT.read_text())
    assert committed == json.loads(json.dumps(module.build())), \
        "swift/Tests/TandemClientTests/Fixtures/policy_fixtures.json is stale: rerun make_fixtures.py"


def test_share_mistakes_are_one_line(tandem_device, tandem_home, tmp_path, monkeypatch):
    """No pseudonym key, a file that is not a policy, a dp policy without a ledger folder: one line each,
    a non-zero exit, nothing sent (the gateway URL answers nothing)."""
    from tandem.privacy.policy import SharingPolicy

    user = _user(9)
    spec, policy_file = _spec_and_policy(tmp_path, SharingPolicy(forms=["dp"]))
    windows = _windows_file(tmp_path / "w.json", user, features=True)
    nowhere = "http://127.0.0.1:9"
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"name": "pseudonymized/v1"}')
    good_policy = tmp_path / "plain.json"
    good_policy.write_text(SharingPolicy().public_json(_har()))
    cases = [((spec, windows, policy_file), "--devices-dir", "privacy ledger"),
             ((spec, windows, bad_policy), None, "not a sharing policy"),
             ((spec, tmp_path / "missing.json", good_policy), None, "cannot read the windows file"),
             ((tmp_path / "nospec.json", windows, good_policy), None, "cannot read the feature spec")]
    for (s, w, p), extra, expected in cases:
        done = _share(tandem_device, nowhere, s, w, p, check=False)
        assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert (extra or expected) in done.stderr, done.stderr
    monkeypatch.delenv("TANDEM_PSEUDONYM_KEY")
    done = _share(tandem_device, nowhere, spec, windows, policy_file, check=False)
    assert done.returncode != 0 and "TANDEM_PSEUDONYM_KEY is not set" in done.stderr



def test_a_python_written_ledger_is_honoured_by_the_swift_device(tandem_device, gateway, tmp_path):
    """Three windows already charged by the Python device (same file, same user): under a budget of 55
    (5 windows of epsilon 10) the Swift device shares only 2 more and says so."""
    from tandem.privacy.ledger import PrivacyLedger
    from tandem.privacy.policy import SharingPolicy

    gw, store, _ = gateway
    policy = SharingPolicy(forms=["dp"], user_budget_epsilon=55.0)
    devices = tmp_path / "devices"
    earlier = PrivacyLedger.load(devices, USER)
    earlier.charge(policy, ["earlier-1", "earlier-2", "earlier-3"], 6)  # HAR: 6-ary randomized response
    earlier.save()
    spec, policy_file = _spec_and_policy(tmp_path, policy)
    done = _share(tandem_device, gw.url, spec, _windows_file(tmp_path / "w.json", _user(10), features=True), policy_file,
                  "--devices-dir", str(devices))
    summary = json.loads(done.stdout)
    assert (summary["windows"], summary["withheld"]) == (2, N_WINDOWS - 2)
    assert "privacy budget reached" in done.stderr
    assert len(PrivacyLedger.load(devices, USER).charges) == 5
