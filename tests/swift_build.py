"""Build the Swift package once per test session and hand its `tandem-device` binary to tests.

A missing toolchain fails the test with one clear line (CI must never pass silently without Swift);
on a developer's own machine set TANDEM_SKIP_SWIFT=1 to skip the Swift tests on purpose."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "swift"
SCRATCH = PACKAGE / ".build"


def tandem_device_binary() -> Path:
    """Path of a freshly built `tandem-device` (built under a file lock: several pytest workers or
    sessions may ask at once)."""
    if os.environ.get("TANDEM_SKIP_SWIFT") == "1":
        pytest.skip("TANDEM_SKIP_SWIFT=1: Swift tests skipped on purpose")
    swift = shutil.which("swift")
    if swift is None:
        pytest.fail("no Swift toolchain on PATH: install Swift 6.x (swift.org) or set TANDEM_SKIP_SWIFT=1", pytrace=False)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with open(SCRATCH / ".pytest-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([swift, "build", "--package-path", str(PACKAGE), "--scratch-path", str(SCRATCH),
                               "--product", "tandem-device"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail("swift build failed:\n" + (done.stdout + done.stderr)[-4000:], pytrace=False)
    return SCRATCH / "debug" / "tandem-device"


def run_device(binary: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `tandem-device ARGS`; with check, a non-zero exit fails the test showing stderr."""
    done = subprocess.run([str(binary), *args], input=input, capture_output=True, text=True)
    if check and done.returncode != 0:
        pytest.fail(f"tandem-device {' '.join(args[:1])} exited {done.returncode}: {done.stderr.strip()}", pytrace=False)
    return done
