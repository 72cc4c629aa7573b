"""The files a passing release ships for the app's tests: golden vectors (raw windows through the
featurization, model outputs, one update step, the update policy's trace) and the Swift XCTest that
checks the app against them."""

from __future__ import annotations

import json

import numpy as np

from tandem.contract import features
from tandem.device import golden
from tandem.device.runtime import DeviceModel
from tandem.task import Task
from tandem.training.device_update import policy_for
from tandem.training.personalization import local_split, pick_labelled

GOLDEN_WINDOWS = 36
GOLDEN_TOLERANCE = 1e-4  # float32 Core ML on a phone against Tandem's float64 runtime
GOLDEN_POLICY_LABELS = 20  # the update gate's budget


def golden_files(task: Task, device: DeviceModel, user) -> dict[str, bytes]:
    fz = features.of(task)
    rows = np.linspace(0, len(user.labels) - 1, min(GOLDEN_WINDOWS, len(user.labels))).astype(int)
    vectors = golden.golden_vectors(device, user.windows[rows], fz.featurize_window, user.labels[rows],
                                    feature_names=list(fz.feature_names))
    vectors["tolerance"] = GOLDEN_TOLERANCE
    pool, _ = local_split(user)
    labelled = pick_labelled(user.labels, pool, per_user=GOLDEN_POLICY_LABELS)
    vectors["update_policy"] = golden.policy_trace(device, user.features[labelled], user.labels[labelled],
                                                   policy_for(task))
    swift = golden.swift_xctest("golden_vectors", GOLDEN_TOLERANCE, model_resource="TandemModel",
                                kind=vectors["model"]["kind"])
    return {"golden_vectors.json": json.dumps(vectors, indent=1).encode(), "TandemGoldenTests.swift": swift.encode()}
