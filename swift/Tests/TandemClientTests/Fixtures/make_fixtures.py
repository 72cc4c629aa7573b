"""Writes policy_fixtures.json: what the Python side computes, for TandemClient's XCTests to match.

Run from the repository root: .venv/bin/python swift/Tests/TandemClientTests/Fixtures/make_fixtures.py
(tests/test_swift_client.py checks the committed file is what this script writes today)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("policy_fixtures.json")


def basic_affordable(policy, classes: int) -> int:
    """How many windows a fresh ledger admits under basic composition (the device's accounting)."""
    from tandem.privacy import dp_accountant
    n = 0
    while dp_accountant.basic_bound(dp_accountant.count_events([policy.window_events(classes)] * (n + 1)), policy.delta) <= policy.user_budget_epsilon + 1e-9:
        n += 1
    return n


def build() -> dict:
    from tandem import task as tasks
    from tandem.contract import features
    from tandem.privacy import dp_accountant
    from tandem.privacy.policy import HIERARCHY_LEVELS, SharingPolicy, clip_features, generalize, noise_scales, rr_keep_probability

    har = tasks.resolve("har")  # the fixtures are HAR's (the demo app's task)
    CLASSES, FEATURE_NAMES = features.of(har).classes, features.of(har).feature_names

    values = {
        "device_model": ["iPhone15,2", "iPhone15", "iPhone", "iPad13,16", "*", "Pixel 7", "15,2", "iPhone15,", "SM-G991B", ""],
        "os_version": ["17.4", "17", "17.4.1", "*", "beta", "a.b", "", ".4"],
        "locale": ["en_US", "en", "de-DE", "pt_BR", "EN_us", "*", "e", "_US", "engl_US", "zh_Hant_TW"],
        "app_version": ["2.1.3", "2.1", "2", "*", "2.x.1", "10.20.30.40", "", "v2.1"],
    }
    generalization = [{"column": c, "value": v, "level": level, "expected": generalize(c, v, level)}
                      for c, vs in values.items() for v in vs for level in range(HIERARCHY_LEVELS[c] + 1)]
    policies = []
    for policy in (SharingPolicy(forms=["dp"]), SharingPolicy(forms=["anonymized", "dp"], noise="gaussian", epsilon_features=3.5,
                                                                 epsilon_labels=1.25, delta=1e-7, user_budget_epsilon=40.0)):
        policies.append({"public": policy.public_dict(har), "scales": noise_scales(policy, har).tolist(),
                         "keep_probability": rr_keep_probability(policy.epsilon_labels, len(CLASSES)),
                         "window_basic_epsilon": dp_accountant.basic_bound(
                             dp_accountant.count_events([policy.window_events(len(CLASSES))]), policy.delta),
                         "basic_affordable": basic_affordable(policy, len(CLASSES))})
    rng = np.random.default_rng(7)
    bounds = np.array([b for b in policies[0]["public"]["clip_bounds"].values()])
    raw = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.uniform(-0.5, 1.5, size=(4, len(bounds)))
    return {
        "feature_names": list(FEATURE_NAMES), "classes": list(CLASSES), "generalization": generalization, "policies": policies,
        "clip": {"input": raw.tolist(), "expected": clip_features(raw, har).tolist()},
        "gzip_hex": gzip.compress(b"tandem wire batch \x00\x01\xff" * 50, mtime=0).hex(),
        "identity": identity(),
        "pseudonymized_public": SharingPolicy().public_dict(har),
    }


def identity() -> dict:
    """Pseudonym, window ids and batch id of one user (the simulator's functions), and the request
    signing message and install id (the gateway's), for fixed inputs."""
    import hashlib

    from tandem.contract import request_signing
    from tandem.privacy.pseudonyms import pseudonymize

    key = b"fixture-pseudonym-key"
    pseudonym = pseudonymize("user-\u00e9-1", key)
    window_ids = [hashlib.sha256(f"{pseudonym}|{k}".encode()).hexdigest()[:32] for k in ("0:0", "0:64", "3:1024")]
    x963 = bytes.fromhex("04" + "11" * 32 + "22" * 32)
    return {
        "key": key.decode(), "user": "user-\u00e9-1", "pseudonym": pseudonym, "window_keys": ["0:0", "0:64", "3:1024"],
        "window_ids": window_ids,
        "batch_id": hashlib.sha256(f"{pseudonym}|{'|'.join(window_ids)}".encode()).hexdigest()[:24],
        "x963_hex": x963.hex(), "install_id": request_signing.install_id(x963),
        "message": request_signing.message("post", "/v1/batches", "ab" * 32, "1764766800", "n" * 16,
                                           request_signing.install_id(x963)).decode(),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    OUT.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
