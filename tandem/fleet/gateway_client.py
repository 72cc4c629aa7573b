"""A simulated device talking to the gateway as a phone would (docs/wire-format.md): one P-256 install
key per device (kept in the device's own folder), enrollment once, then every batch in wire format v1,
gzip'd (or sealed), signed. `tandem share --via URL` uploads through this."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.contract import request_signing as signing
from tandem.contract import wire
from tandem.privacy import sealing

KEY_FILE = "install-key.pem"


class GatewayRefused(RuntimeError):
    """The gateway answered 4xx/5xx; the message is its one-line reason."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"gateway refused ({status}): {detail}")
        self.status, self.detail = status, detail


def install_key(folder: Path | None) -> ec.EllipticCurvePrivateKey:
    """The device's install key: created once in `folder` (mode 600), or in memory when None."""
    if folder is None:
        return ec.generate_private_key(ec.SECP256R1())
    path = Path(folder) / KEY_FILE
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))[:300]
    except ValueError:
        return response.text[:300]


class Device:
    """One app install's connection to a gateway."""

    def __init__(self, url: str, key: ec.EllipticCurvePrivateKey, client: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.key = key
        self.public = signing.public_bytes(key.public_key())
        self.install_id = signing.install_id(self.public)
        self.client = client or httpx.Client(timeout=60)
        self.enrolled = False

    def request(self, method: str, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:
        signed = signing.sign(self.key, method, path, body)
        return self.client.request(method, self.url + path, content=body, headers={**(headers or {}), **signed})

    def enroll(self, attestation: dict | None = None) -> dict:
        body = json.dumps({"public_key": base64.b64encode(self.public).decode(),
                           "attestation": attestation or {"format": "development"}}).encode()
        r = self.request("POST", "/v1/enroll", body, {"Content-Type": "application/json"})
        if r.status_code not in (200, 201):
            raise GatewayRefused(r.status_code, _detail(r))
        self.enrolled = True
        return r.json()

    def upload(self, table: pa.Table, client_batch_id: str, seal_with: tuple[str, bytes] | None = None) -> dict:
        """Land one shared-batch table through the gateway; returns its answer (status, batch key)."""
        if not self.enrolled:
            self.enroll()
        body, headers = wire_body(table, client_batch_id, seal_with)
        r = self.request("POST", "/v1/batches", body, {**headers, "Idempotency-Key": client_batch_id})
        if r.status_code not in (200, 201):
            raise GatewayRefused(r.status_code, _detail(r))
        return r.json()


def wire_body(table: pa.Table, client_batch_id: str, seal_with: tuple[str, bytes] | None = None,
              created_at: str | None = None) -> tuple[bytes, dict]:
    """(body, content headers) of a batch in wire format v1: gzip'd JSON, or that sealed."""
    policy = json.loads((table.schema.metadata or {})[b"tandem.policy"])
    if created_at is None:  # from the data, not the clock: a re-shared batch is the same bytes (an idempotent retry)
        newest = pc.max(table.column("captured_at")).as_py() or datetime.now(timezone.utc)
        created_at = newest.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    gz = wire.gzip_bytes(wire.encode(table, client_batch_id, created_at, policy))
    if seal_with is not None:
        key_id, key = seal_with
        return sealing.seal(gz, key, key_id, content=wire.SEALED_PLAINTEXT), {"Content-Type": wire.SEALED_CONTENT_TYPE}
    return gz, {"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip"}
