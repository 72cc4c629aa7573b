"""No input makes the gateway answer 5xx: schemathesis fuzzes every operation of /openapi.json over
HTTP, and a mutation fuzz sends correctly *signed* broken batches (flipped bytes, truncations, JSON
values of the wrong type) so that the checks behind the signature are reached too."""

from __future__ import annotations

import copy
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem import task as tasks
from tandem.contract import wire
from tandem.data.store import LocalStore
from tandem.fleet import users as fleet
from tandem.fleet.gateway_client import Device
from tandem.fleet.sharing import batch_table
from tandem.gateway.server import ThreadedGateway
from tandem.settings import Settings


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    with ThreadedGateway(Settings(home=home), LocalStore(home / "store")) as gw:
        yield gw


def test_schemathesis_finds_no_server_error(gateway):
    st = Path(sys.executable).parent / "st"
    run = subprocess.run([str(st), "run", f"{gateway.url}/openapi.json", "--checks", "not_a_server_error",
                          "--max-examples", "25", "--seed", "1", "--no-color"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("Test cases:")[-1]


def _mutations(doc: dict, rng: random.Random):
    junk = [None, True, -1, 1e308, "", "x" * 300, [], {}, "NaN", 2**63, [1, "a"]]
    for _ in range(60):
        d = copy.deepcopy(doc)
        where = rng.choice(["header", "columns", "top"])
        if where == "top":
            d[rng.choice(["format", "header", "columns"])] = rng.choice(junk)
        elif where == "header":
            d["header"][rng.choice(list(d["header"]))] = rng.choice(junk)
        else:
            name = rng.choice(list(d["columns"]))
            if rng.random() < 0.5:
                d["columns"][name] = rng.choice(junk)
            else:
                d["columns"][name][rng.randrange(len(d["columns"][name]))] = rng.choice(junk)
        yield json.dumps(d).encode()


def test_signed_broken_batches_are_4xx_never_5xx(gateway):
    rng = random.Random(7)
    user = fleet.synthetic_fleet(tasks.resolve("har"), 2, windows_per_class=4, seed=2)[0]
    table = batch_table(user, np.arange(4), b"fuzz-key", "k1")
    good = wire.encode(table, "fuzz", "2026-12-03T00:00:00Z", json.loads(table.schema.metadata[b"tandem.policy"]))
    d = Device(gateway.url, ec.generate_private_key(ec.SECP256R1()))
    d.enroll()
    bodies = [gzip.compress(b) for b in _mutations(json.loads(good), rng)]
    packed = gzip.compress(good)
    for _ in range(40):  # byte flips and truncations of the gzip stream
        b = bytearray(packed)
        if rng.random() < 0.5:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        else:
            del b[rng.randrange(len(b)):]
        bodies.append(bytes(b))
    statuses = []
    for body in bodies:
        r = d.request("POST", "/v1/batches", body, {"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip"})
        statuses.append(r.status_code)
        assert r.status_code < 500, (r.status_code, r.text)
        if r.status_code >= 400:
            assert "\n" not in r.json()["detail"]
    assert sum(s >= 400 for s in statuses) > len(statuses) // 2  # most broken bodies are refused (a flip may hit a float)
