"""The XCTest a release ships, rendered by the release's own code (gates.golden_files) for a
release-shaped classifier and regressor of the HAR task, compiled against TandemKit and run on
Linux against the release's files (TANDEM_GOLDEN_DIR): featurizer, model, update-policy and update-step
checks pass, with TandemKit's own update where Core ML is compiled out.

The check package lives at a fixed place under swift/.build so that reruns build incrementally
(a first build of TandemKit takes a few minutes on two cores)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tandem import task as tasks
from tandem.contract import features
from tandem.data.reference import ReferenceUser
from tandem.device import knn
from tandem.device.runtime import DeviceModel
from tandem.release.gates import golden_files
from tests.swift_build import PACKAGE, SCRATCH, tandem_device_binary

sys.path.insert(0, str(Path(__file__).parent))
import release_shaped  # noqa: E402

CHECK = SCRATCH / "golden-xctest"  # the check package and its build folder (gitignored)
HAR = tasks.resolve("har")
HAR_KNN = HAR.model_copy(update={"device": HAR.device.model_copy(update={"knn_neighbors": 3})})  # its devices pick


def synthetic_user(model: DeviceModel, n: int = 90, seed: int = 0) -> ReferenceUser:
    """A test device's recordings: windows within the channels' bounds, labelled in turns of ten
    windows per activity (a regressor: the model's values shifted), so the policy has something to learn."""
    rng = np.random.default_rng(seed)
    har = features.of(HAR)
    bounds = np.array([har.channel_bounds[c] for c in har.channels], dtype=np.float64)
    t = np.arange(har.window)[:, None] / har.sample_rate_hz
    windows = np.stack([np.clip(rng.uniform(-0.3, 0.3, len(bounds)) * bounds
                                + rng.uniform(0, 0.1, len(bounds)) * bounds
                                * np.sin(2 * np.pi * rng.uniform(0.2, 5, len(bounds)) * t + rng.uniform(0, 6, len(bounds)))
                                + rng.normal(0, 0.01, (har.window, len(bounds))) * bounds, -bounds, bounds)
                        for _ in range(n)])
    X = np.stack([har.featurize_window(w) for w in windows])
    if model.is_classifier:  # the user's activities, ten windows each in turn
        labels = np.asarray(model.class_labels)[(np.arange(n) // 10) % len(model.class_labels)]
    else:
        labels = model.predict(X) * 0.8 + 1.0
    return ReferenceUser(user_id="device-1", features=X, labels=labels, windows=windows,
                         window_keys=[f"s0:{i}" for i in range(n)],
                         captured_at=np.datetime64("2026-01-01T00:00:00", "ms") + np.arange(n) * np.timedelta64(2560, "ms"))


def write_release(folder: Path, model: DeviceModel, user: ReferenceUser, task=HAR) -> str:
    """The files an app build pulls (model.mlmodel, feature_spec.json, golden vectors, and the k-NN personal
    model when the task's devices use one); returns the XCTest."""
    folder.mkdir(parents=True, exist_ok=True)
    files = golden_files(task, model, user)
    model.save(folder / "model.mlmodel")
    for name, raw in knn.release_files(model, task.device.knn_neighbors).items():
        (folder / name).write_bytes(raw)
    (folder / "feature_spec.json").write_text(json.dumps(features.of(HAR).feature_spec(), indent=1))
    (folder / "golden_vectors.json").write_bytes(files["golden_vectors.json"])
    return files["TandemGoldenTests.swift"].decode()


MANIFEST = """// swift-tools-version:5.9
// An app's test targets as the release's XCTest expects them: they depend on TandemKit.
import PackageDescription

let package = Package(
    name: "GoldenXCTestCheck",
    dependencies: [.package(path: "{package}")],
    targets: [
        .testTarget(name: "ClassifierGoldenTests", dependencies: [.product(name: "TandemKit", package: "swift")]),
        .testTarget(name: "RegressorGoldenTests", dependencies: [.product(name: "TandemKit", package: "swift")]),
    ]
)
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tandem_device_binary()  # one clear line (or a skip) when there is no toolchain
    root = tmp_path_factory.mktemp("releases")
    d = features.of(HAR).n_features
    clf = release_shaped.model(seed=11, d=d, hidden=(32,), labels=("walking", "sitting", "lying"))
    reg = release_shaped.model(seed=12, d=d, hidden=(32,), labels=("value",), regression=True)
    knn_source = write_release(root / "classifier-knn", clf, synthetic_user(clf, seed=1), HAR_KNN)  # the k-NN model wins
    sources = {"ClassifierGoldenTests": write_release(root / "classifier", clf, synthetic_user(clf)),
               "RegressorGoldenTests": write_release(root / "regressor", reg, synthetic_user(reg, seed=1))}
    CHECK.mkdir(parents=True, exist_ok=True)
    (CHECK / "Package.swift").write_text(MANIFEST.format(package=PACKAGE))
    for target, source in sources.items():
        shutil.rmtree(CHECK / "Tests" / target, ignore_errors=True)
        (CHECK / "Tests" / target).mkdir(parents=True)
        (CHECK / "Tests" / target / "TandemGoldenTests.swift").write_text(source)
    assert knn_source == sources["ClassifierGoldenTests"]  # one XCTest for every classifier release
    return root, sources


def swift_test(target: str, release: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["swift", "test", "--package-path", str(CHECK), "--scratch-path", str(CHECK / ".build"),
                           "--filter", target], capture_output=True, text=True,
                          env={**os.environ, "TANDEM_GOLDEN_DIR": str(release)})


def outcomes(log: str, target: str) -> dict[str, str]:
    return dict(re.findall(r"Test Case '(?:\w+\.)?TandemGoldenTests\.(\w+)' (passed|failed|skipped)", log))


@pytest.mark.parametrize("target, kind", [("ClassifierGoldenTests", "classifier"), ("RegressorGoldenTests", "regressor")])
def test_the_shipped_xctest_compiles_against_tandemkit_and_passes_on_the_release(rendered, target, kind):
    root, sources = rendered
    assert ("predictionsAfter" in sources[target]) == (kind == "regressor")
    done = swift_test(target, root / kind)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert outcomes(log, target) == {"testFeaturizerMatchesGolden": "passed", "testModelPredictionMatchesGolden": "passed",
                                     "testUpdatePolicyChoosesTheGoldenEpochs": "passed",
                                     "testUpdateStepMatchesGolden": "passed"}, log[-4000:]


def test_the_shipped_xctest_replays_the_knn_candidate_and_needs_its_model(rendered, tmp_path):
    root, _ = rendered
    trace = json.loads((root / "classifier-knn" / "golden_vectors.json").read_text())["update_policy"]
    assert trace["policy"]["knn_neighbors"] == 3 and all("knn" in turn for turn in trace["turns"])
    assert trace["method"] == "knn" and trace["epochs"] == 0  # the XCTest replays the k-NN branch, its model's rows
    done = swift_test("ClassifierGoldenTests", root / "classifier-knn")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert outcomes(log, "ClassifierGoldenTests")["testUpdatePolicyChoosesTheGoldenEpochs"] == "passed", log[-4000:]
    missing = tmp_path / "without-knn"
    shutil.copytree(root / "classifier-knn", missing)
    (missing / "personal_knn.mlmodel").unlink()  # a build that forgot to bundle it fails, naming it
    done = swift_test("ClassifierGoldenTests", missing)
    assert outcomes(done.stdout + done.stderr, "ClassifierGoldenTests")["testUpdatePolicyChoosesTheGoldenEpochs"] == "failed"
    assert "personal_knn.mlmodel is missing" in done.stdout + done.stderr


def test_the_shipped_xctest_fails_on_a_release_it_does_not_match(rendered, tmp_path):
    root, _ = rendered
    bad = tmp_path / "tampered"
    shutil.copytree(root / "classifier", bad)
    golden = json.loads((bad / "golden_vectors.json").read_text())
    golden["windows"][0]["probability_vector"][0] += 0.01  # beyond the 1e-4 tolerance
    golden["update_policy"]["epochs"] += 1
    (bad / "golden_vectors.json").write_text(json.dumps(golden))
    done = swift_test("ClassifierGoldenTests", bad)
    result = outcomes(done.stdout + done.stderr, "ClassifierGoldenTests")
    assert done.returncode != 0
    assert result["testModelPredictionMatchesGolden"] == "failed" and result["testUpdatePolicyChoosesTheGoldenEpochs"] == "failed"
    assert result["testFeaturizerMatchesGolden"] == "passed"
