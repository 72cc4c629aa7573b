"""Faults end in one line (issue 21): an S3 endpoint that hangs or goes down mid-ingest, a full disk, a
read-only store, a slow Prefect start, two first runs at once on a new home. Each through the real
`tandem` command in a process of its own: a non-zero exit, ONE `error:` line saying what is wrong and
what to do, no traceback and none of Prefect's own log noise; `--debug` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tandem.release import signing
from tests.s3_faults import FaultyS3

ROOT = Path(__file__).resolve().parents[1]
PRIVATE, PUBLIC = signing.generate()
MEASURED: dict[str, float] = {}  # seconds per fault, printed with -s (figures for the report, not asserted)
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # small networks: torch's thread pool only contends


def tandem(home: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(home), "TANDEM_SIGNING_KEY": PRIVATE,
                   "TANDEM_RELEASE_PUBLIC_KEYS": PUBLIC, "TANDEM_PSEUDONYM_KEY": "fault-key", **THREADS, **env}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        if var not in env:
            environment.pop(var, None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=900)
    return done, time.monotonic() - start


def one_line(done: subprocess.CompletedProcess, *words: str, max_lines: int = 12) -> str:
    """Non-zero, one `error:` line holding `words`, no traceback, and little else on the terminal."""
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    assert "Traceback" not in text and "unexpected" not in errors[0], text[-3000:]
    assert all(w in errors[0] for w in words), errors[0]
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) <= max_lines, f"{len(lines)} lines:\n" + "\n".join(lines[:60])
    return errors[0]


@pytest.mark.parametrize("mode, words", [("hang", ["did not answer"]), ("down", ["cannot reach S3"])])
def test_s3_that_hangs_or_goes_down_mid_ingest(tmp_path, s3_endpoint, s3_bucket, mode, words):
    s3 = FaultyS3(int(s3_endpoint.rsplit(":", 1)[1]), mode)
    env = {"TANDEM_STORE": f"s3://{s3_bucket}/x", "TANDEM_S3_ENDPOINT_URL": s3.url, "TANDEM_S3_TIMEOUT_SECONDS": "2"}
    try:
        shared, _ = tandem(tmp_path / "home", "share", "--source", "synthetic", "--users", "8", **env)
        assert shared.returncode == 0 and not s3.failing.is_set(), shared.stderr[-2000:]
        done, seconds = tandem(tmp_path / "home", "ingest", **env)  # the ingest flow, with its task retries
    finally:
        s3.close()
    assert s3.failing.is_set()  # the fault struck while the batches were being read
    MEASURED[f"s3 {mode}"] = seconds
    print(f"s3 {mode} mid-ingest: ended after {seconds:.0f} s")
    one_line(done, *words)


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB file system of its own (tmpfs; needs root, as on CI's machines): filling it fills no one else's."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip()[:100]}): a full disk needs one")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path, leave_mb: int) -> None:
    free_mb = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize // 2**20
    with open(mount / "filler", "wb") as f:
        for _ in range(max(0, free_mb - leave_mb)):
            f.write(b"\0" * 2**20)


def test_a_full_disk_during_a_run(small_disk):
    home = small_disk / "home"
    shared, _ = tandem(home, "share", "--source", "synthetic", "--users", "8")
    assert shared.returncode == 0, shared.stderr[-2000:]
    fill(small_disk, leave_mb=6)  # room to start, not to finish: the run fails somewhere in the middle
    done, seconds = tandem(home, "run", "--epochs", "2")
    MEASURED["full disk"] = seconds
    lines = len([line for line in (done.stdout + done.stderr).splitlines() if line.strip()])
    print(f"full disk: ended after {seconds:.0f} s in {lines} lines")
    # besides the one line: the flow's own progress (and delta-rs's Rust panic note, which Python cannot silence)
    one_line(done, "disk is full", "TANDEM_HOME", max_lines=40)


def test_a_read_only_store(small_disk, tmp_path):
    store = small_disk / "store"
    shared, _ = tandem(tmp_path / "home", "share", "--source", "synthetic", "--users", "8", TANDEM_STORE=str(store))
    assert shared.returncode == 0, shared.stderr[-2000:]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done, _ = tandem(tmp_path / "home", "run", TANDEM_STORE=str(store))
    one_line(done, "read-only", "TANDEM_STORE")
    debug, _ = tandem(tmp_path / "home", "--debug", "run", TANDEM_STORE=str(store))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_a_prefect_server_that_starts_too_slowly(tmp_path, command):
    """Fault injected: Prefect's ephemeral start-up timeout set to 1 s (120 s by default), so its server
    is always too slow. The start is retried once, then `tandem ingest` / `tandem run` end in the line
    that names the ways around it."""
    home = tmp_path / "home"
    shared, _ = tandem(home, "share", "--source", "synthetic", "--users", "8")
    assert shared.returncode == 0, shared.stderr[-2000:]
    done, _ = tandem(home, command, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    one_line(done, "did not start in time", "tandem stack up", "PREFECT_API_URL")


def test_a_slow_prefect_start_is_retried_once_and_the_run_goes_on(monkeypatch):
    """Fault injected into the flow call `tandem run` makes (`launch.run_flow`): its first call fails as
    Prefect does when the ephemeral server starts too slowly (issue 17: 3 of 17 runs), the second
    succeeds. The run goes on; with PREFECT_API_URL set (a server of the team's own) nothing is retried."""
    from tandem.cli import launch

    calls = []

    def flow(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError(f"{launch.EPHEMERAL_TIMEOUT} at http://127.0.0.1:8123/api. Try increasing ...")
        return {"published": "v1", "args": args, "kwargs": kwargs}

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert launch.run_flow(flow, "params", track=True) == {"published": "v1", "args": ("params",), "kwargs": {"track": True}}
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with pytest.raises(RuntimeError, match="ephemeral"):
        launch.run_flow(flow)
    assert len(calls) == 1


def test_two_first_runs_at_once_on_a_new_home(tmp_path):
    """Both create the MLflow database (and Prefect's) at the same moment: it is created once, under a
    lock, both runs finish, and one release is published."""
    home = tmp_path / "home"
    shared, _ = tandem(home, "share", "--source", "synthetic", "--users", "8")
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert not (home / "mlflow.db").exists()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TANDEM_HOME": str(home), "TANDEM_SIGNING_KEY": PRIVATE,
                   "TANDEM_RELEASE_PUBLIC_KEYS": PUBLIC, "TANDEM_PSEUDONYM_KEY": "fault-key", **THREADS}
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        environment.pop(var, None)
    runs = [subprocess.Popen([sys.executable, "-m", "tandem.cli", "run", "--epochs", "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=environment, cwd=ROOT) for _ in range(2)]
    outputs = [run.communicate(timeout=1200)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0 and "error:" not in output, output[-3000:]
    published = [line for output in outputs for line in output.splitlines() if line.startswith("published")]
    assert len(published) == 1 and any("nothing new since snapshot" in output for output in outputs), outputs
    assert len(list((home / "store" / "releases").glob("*/*/manifest.json"))) == 1
