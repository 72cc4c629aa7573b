"""Shared fixtures: real parts only (a moto S3 server over HTTP, a real MLflow SQLite store, a real
Prefect engine in ephemeral mode, real GX validation)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

# Prefect's ephemeral database and settings must be chosen before prefect is first imported.
_SESSION_HOME = f"/tmp/tandem-tests-{os.getpid()}"
os.environ.setdefault("PREFECT_HOME", f"{_SESSION_HOME}/prefect")
os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, spoken to over HTTP by boto3 like any S3."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    import boto3

    name = f"tandem-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def tandem_home(tmp_path, monkeypatch):
    """An embedded-default environment: local store, MLflow on SQLite, all under a fresh TANDEM_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("TANDEM_HOME", str(home))
    for var in ("TANDEM_STORE", "TANDEM_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "TANDEM_MODEL_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TANDEM_PSEUDONYM_KEY", "test-key-" + uuid.uuid4().hex)
    from tandem.release.signing import generate

    private, public = generate()  # the server signs with one, app builds pin the other
    monkeypatch.setenv("TANDEM_SIGNING_KEY", private)
    monkeypatch.setenv("TANDEM_RELEASE_PUBLIC_KEYS", public)
    return home


@pytest.fixture(scope="session")
def tandem_device():
    """The compiled Swift `tandem-device` (TandemKit's command line), built once per session."""
    from tests.swift_build import tandem_device_binary

    return tandem_device_binary()
