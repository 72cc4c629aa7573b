"""Featurization speed: TandemKit's Swift featurizer against the numpy reference, HAR windows, same run.

A phone featurizes every window it records; the target is Swift at least as fast per window as numpy.
numpy is timed batched over all windows (the server's way, its best case) and one window at a time
(the way a device meets them); Swift as a release build (`swift build -c release`), one window at a
time (`tandem-device featurize --repeat`). Both sides featurize the same windows, and the bench
checks that they agree (max |swift - numpy|) before it times anything.

Writes bench/results.json["swift_featurize"] (other keys are kept) and prints the numbers.
Usage: python bench/bench_swift_featurize.py [--windows N]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.contract import features
from results_file import record  # bench/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "swift"
SCRATCH = PACKAGE / ".build"  # shared with `make test` and the pytest fixture (release config beside debug)
REPEATS = 3  # best of


def har_windows(n: int, seed: int = 0) -> np.ndarray:
    """n windows (128, 6) like a held phone's: gravity-like offsets, a few oscillations, noise; in bounds."""
    rng = np.random.default_rng(seed)
    har = features.of(tasks.resolve("har"))
    bounds = np.array([har.channel_bounds[c] for c in har.channels])
    t = np.arange(har.window)[None, :, None] / har.sample_rate_hz
    steady = rng.uniform(-0.1, 0.1, (n, 1, 6)) * bounds
    freqs = rng.uniform(0.3, 20.0, (n, 3, 1, 6))
    amps = rng.uniform(0.0, 0.05, (n, 3, 1, 6)) * bounds
    waves = (amps * np.sin(2 * np.pi * freqs * t[:, None] + rng.uniform(0, 6.3, (n, 3, 1, 6)))).sum(axis=1)
    return np.clip(steady + waves + rng.normal(0, 0.005, (n, har.window, 6)) * bounds, -bounds, bounds)


def best_rate(fn, count: int) -> float:
    """Windows per second of the fastest of REPEATS runs of fn (which featurizes `count` windows)."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def build_release() -> Path:
    swift = shutil.which("swift") or "/opt/swift/usr/bin/swift"
    done = subprocess.run([swift, "build", "-c", "release", "--package-path", str(PACKAGE), "--scratch-path", str(SCRATCH),
                           "--product", "tandem-device"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit("swift build -c release failed:\n" + (done.stdout + done.stderr)[-3000:])
    return SCRATCH / "release" / "tandem-device"


def main() -> None:
    args = sys.argv[1:]
    n = int(args[args.index("--windows") + 1]) if "--windows" in args else 2000
    load_start = os.getloadavg()
    windows = har_windows(n)
    har = features.of(tasks.resolve("har"))
    binary = build_release()

    with tempfile.TemporaryDirectory() as tmp:
        spec, data = Path(tmp) / "feature_spec.json", Path(tmp) / "windows.json"
        spec.write_text(json.dumps(har.feature_spec()))
        data.write_text(json.dumps(windows.tolist()))

        # the same numbers on both sides before any timing
        swift_features = np.array(json.loads(subprocess.run(
            [str(binary), "featurize", "--spec", str(spec), "--windows", str(data)],
            check=True, capture_output=True, text=True).stdout))
        numpy_features = har.featurize(windows)
        max_diff = float(np.abs(swift_features - numpy_features).max())

        numpy_batched = best_rate(lambda: har.featurize(windows), n)
        numpy_one = best_rate(lambda: [har.featurize_window(w) for w in windows[:200]], 200)
        passes = 5
        swift_rate = max(json.loads(subprocess.run(
            [str(binary), "featurize", "--spec", str(spec), "--windows", str(data), "--repeat", str(passes)],
            check=True, capture_output=True, text=True).stdout)["windows_per_second"] for _ in range(REPEATS))

    result = {
        "task": "har", "windows": n, "features_per_window": har.n_features,
        "max_abs_diff_swift_vs_numpy": max_diff,
        "numpy_batched_windows_per_s": round(numpy_batched, 1),
        "numpy_one_at_a_time_windows_per_s": round(numpy_one, 1),
        "swift_release_windows_per_s": round(swift_rate, 1),
        "swift_over_numpy_batched": round(swift_rate / numpy_batched, 2),
        "swift_over_numpy_one_at_a_time": round(swift_rate / numpy_one, 2),
        "swift_us_per_window": round(1e6 / swift_rate, 2),
        "numpy_batched_us_per_window": round(1e6 / numpy_batched, 2),
    }
    record("swift_featurize", result, load_start)
    for key, value in result.items():
        print(f"{key:36} {value}")


if __name__ == "__main__":
    main()
