"""TandemModel's Apple-only code (`#if canImport(CoreML)`: CoreMLPredictor, CoreMLUpdateEngine) and the
release XCTest's Core ML branches cannot be built on Linux. They are type-checked here against
coreml_stub/CoreML.swift, a stand-in that declares Apple's documented signatures of the Core ML API
they call (nothing runs): this catches Swift-level mistakes, not a misremembered Apple API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tandem.device.golden import swift_xctest
from tests.swift_build import PACKAGE

STUB = Path(__file__).parent / "coreml_stub" / "CoreML.swift"


def swiftc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swiftc", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    if shutil.which("swiftc") is None:
        pytest.fail("no Swift toolchain on PATH: install Swift 6.x (swift.org)", pytrace=False)
    out = tmp_path_factory.mktemp("coreml")
    done = swiftc("-parse-as-library", "-emit-module", "-module-name", "CoreML", str(STUB),
                  "-emit-module-path", str(out / "CoreML.swiftmodule"))
    assert done.returncode == 0, done.stderr
    probe = out / "probe.swift"
    probe.write_text('#if canImport(CoreML)\n#error("visible")\n#endif\n')
    assert "visible" in swiftc("-typecheck", "-I", str(out), str(probe)).stderr  # the branches are really compiled
    sources = sorted((PACKAGE / "Sources" / "TandemModel").glob("*.swift"))
    sources += sorted((PACKAGE / "Sources" / "TandemFeatures").rglob("*.swift"))
    done = swiftc("-parse-as-library", "-emit-module", "-module-name", "TandemKit", "-I", str(out),
                  *map(str, sources), "-emit-module-path", str(out / "TandemKit.swiftmodule"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_the_core_ml_branches_type_check(modules, kind, tmp_path):
    source = tmp_path / "TandemGoldenTests.swift"
    source.write_text(swift_xctest("golden_vectors", 1e-4, model_resource="TandemModel", kind=kind))
    done = swiftc("-typecheck", "-I", str(modules), str(source))
    assert done.returncode == 0, done.stderr[-3000:]
