"""The gateway's HTTP API (FastAPI; OpenAPI at /openapi.json). Every refusal is a 4xx with
``{"detail": "<one line>"}`` and writes nothing to the landing zone; the order of checks is cheapest
first, and every store write comes after every check (docs/wire-format.md)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tandem import task as tasks
from tandem.contract import features, wire
from tandem.contract import request_signing as signing
from tandem.data.landing import INCOMING
from tandem.data.store import NotFound, S3Store, Store
from tandem.gateway import attestation, releases, state
from tandem.gateway.landing import landed_object, policy_of
from tandem.privacy import sealing
from tandem.release.layout import ReleaseError, check_version, release_prefix
from tandem.settings import Settings
from tandem.task import Task

ENROLL_MAX_BYTES = 64 * 1024
INSTALL_CACHE = 100_000  # enrollments kept in memory per replica (they never change once written)
IDEMPOTENCY = "Idempotency-Key"
WIRE_KINDS = {"wire": ".json.gz", "sealed-wire": ".sealed"}  # presigned uploads the gateway completes
ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}}


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None):
        self.status, self.detail, self.headers = status, detail, headers or {}


@dataclass
class Gateway:
    settings: Settings
    store: Store
    task: Task  # resolved once from the settings when the app is made
    verifiers: dict
    installs: dict  # install id -> enrollment (immutable once written: safe to cache in each replica)

    def install(self, install_id: str) -> dict:
        record = self.installs.get(install_id) or state.read_install(self.store, install_id)
        if record is None:
            raise Refused(401, "unknown install: enroll first (POST /v1/enroll)")
        if len(self.installs) >= INSTALL_CACHE:  # bounded memory on a large fleet: start over
            self.installs.clear()
        self.installs[install_id] = record
        return record


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit`: the declared Content-Length first, then
    the bytes actually streamed (a chunked body declares nothing)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body of {declared} bytes declared, the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body passed the limit of {limit} bytes while streaming")
        chunks.append(chunk)
    return b"".join(chunks)


def signed(gw: Gateway, request: Request, body: bytes) -> tuple[dict, dict]:
    """(signing headers, the install's record), or Refused(401)."""
    try:
        got = signing.parse(request.headers, body, time.time(), gw.settings.gateway_max_skew_seconds)
        record = gw.install(got[signing.INSTALL])
        signing.verify(got, request.method, request.url.path, bytes.fromhex(record["public_key"]))
    except signing.SigningError as e:
        raise Refused(401, str(e)) from None
    if state.nonce_seen(gw.store, *_nonce(got)):
        raise Refused(401, "replayed request: this nonce was used before; re-sign with a fresh nonce")
    return got, record


def _nonce(got: dict) -> tuple[str, str, int]:
    return got[signing.INSTALL], got[signing.NONCE], int(got[signing.TIMESTAMP])


def _claim_nonce(gw: Gateway, got: dict) -> None:
    if not state.claim_nonce(gw.store, *_nonce(got)):
        raise Refused(401, "replayed request: this nonce was used before; re-sign with a fresh nonce")


def enroll(gw: Gateway, request: Request, body: bytes) -> tuple[int, dict]:
    try:
        doc = json.loads(body)
        x963 = base64.b64decode(doc["public_key"], validate=True)
        att = doc["attestation"]
        assert isinstance(att, dict) and isinstance(att.get("format"), str)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise Refused(400, "body must be JSON {public_key: base64 x963, attestation: {format, ...}}") from None
    try:
        signing.load_public(x963)
    except signing.SigningError as e:
        raise Refused(400, str(e)) from None
    install = signing.install_id(x963)
    try:
        got = signing.parse(request.headers, body, time.time(), gw.settings.gateway_max_skew_seconds)
        if got[signing.INSTALL] != install:
            raise signing.SigningError(f"{signing.INSTALL} must be the sha256 of public_key")
        signing.verify(got, request.method, request.url.path, x963)
    except signing.SigningError as e:
        raise Refused(401, str(e)) from None
    verifier = gw.verifiers.get(att["format"])
    if verifier is None:
        raise Refused(400, f"attestation format {att['format'][:40]!r} is not accepted here (accepted: {', '.join(gw.verifiers)})")
    try:
        proof = verifier.verify(att, x963)
    except attestation.AttestationError as e:
        raise Refused(401, f"attestation refused: {e}") from None
    if state.nonce_seen(gw.store, *_nonce(got)):
        raise Refused(401, "replayed request: this nonce was used before; re-sign with a fresh nonce")
    _claim_nonce(gw, got)
    record = {"public_key": x963.hex(), "attestation": proof, "enrolled_at": int(time.time())}
    new = state.enroll(gw.store, install, record)
    return (201 if new else 200), {"install_id": install, "status": "enrolled" if new else "already enrolled"}


def upload(gw: Gateway, request: Request, body: bytes, sealed: bool) -> tuple[int, dict, dict]:
    got, _ = signed(gw, request, body)
    idem = request.headers.get(IDEMPOTENCY)
    if idem is not None and not wire.CLIENT_ID.fullmatch(idem):
        raise Refused(400, f"{IDEMPOTENCY} must be 1-64 of [A-Za-z0-9_.-]")
    return land(gw, got, body, sealed, idem)


def land(gw: Gateway, got: dict, body: bytes, sealed: bool, idem: str | None) -> tuple[int, dict, dict]:
    """Check a wire batch (`body`, signed for in `got`) and land it: every check first, then the nonce,
    the daily slots, the batch (create-only) and the idempotency record."""
    install = got[signing.INSTALL]
    s = gw.settings
    digest = hashlib.sha256(body).hexdigest()
    seal_with = None
    try:
        if sealed:
            ring = sealing.keyring(s)
            try:
                plain, head = sealing.open_sealed(body, ring)
            except sealing.EnvelopeError as e:
                raise Refused(400, str(e)) from None
            seal_with = (head["key_id"], ring[head["key_id"]])
            body_json = wire.inflate(plain, s.gateway_max_inflated_bytes)
        else:
            body_json = wire.inflate(body, s.gateway_max_inflated_bytes)
        doc = wire.parse_json(body_json)
        idem = idem or _client_batch_id(doc)
        prior = state.read_idempotent(gw.store, install, idem) if idem else None
        if prior is not None:
            if prior["body_sha256"] != digest:
                raise Refused(409, f"{IDEMPOTENCY} / client_batch_id {idem!r} was used before with different bytes")
            _claim_nonce(gw, got)
            return 200, {**prior["answer"], "status": "already landed"}, {}
        batch = wire.from_document(doc, s.max_batch_rows, gw.task)
        policy = policy_of(batch.header)
        if policy.sealed != sealed:
            raise Refused(400, f"policy {policy.name} {'requires' if policy.sealed else 'forbids'} a sealed body "
                          f"({wire.SEALED_CONTENT_TYPE})")
        key, data = landed_object(batch, policy, seal_with, gw.task)
    except wire.TooLarge as e:
        raise Refused(413, str(e)) from None
    except wire.WireError as e:
        raise Refused(400, str(e)) from None
    idem = idem or batch.header["client_batch_id"]
    _claim_nonce(gw, got)
    day = state.utc_day()
    pseudonym = batch.header["pseudonym"]
    retry = {"Retry-After": str(state.seconds_to_midnight())}
    slot = state.claim_slot(gw.store, day, "install", install, s.gateway_max_install_batches_per_day)
    if slot is None:
        raise Refused(429, f"this install has landed its {s.gateway_max_install_batches_per_day} batches for {day} (UTC); "
                      "retry after midnight UTC", retry)
    pslot = state.claim_slot(gw.store, day, "pseudonym", pseudonym, s.max_pseudonym_batches_per_day)
    if pslot is None:
        state.release_slot(gw.store, slot)
        raise Refused(429, f"this pseudonym has landed its {s.max_pseudonym_batches_per_day} batches for {day} (UTC); "
                      "retry after midnight UTC", retry)
    try:
        new = gw.store.put(key, data, if_absent=True)
    except Exception:  # the store failed: the batch did not land, so it must not count
        state.release_slot(gw.store, pslot)
        state.release_slot(gw.store, slot)
        raise
    if not new:  # the same windows landed before (through the gateway or directly): they count once
        state.release_slot(gw.store, pslot)
        state.release_slot(gw.store, slot)
    answer = {"status": "landed" if new else "already landed", "batch": key, "rows": batch.table.num_rows}
    state.record_idempotent(gw.store, install, idem, digest, answer)
    return (201 if new else 200), answer, {}


def _client_batch_id(doc: dict) -> str | None:
    """The header's client batch id, read before the full check so an idempotent retry answers early."""
    try:
        value = doc["header"]["client_batch_id"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) and wire.CLIENT_ID.fullmatch(value) else None


def presign(gw: Gateway, request: Request, body: bytes) -> dict:
    got, _ = signed(gw, request, body)
    if not isinstance(gw.store, S3Store):
        raise Refused(404, "this gateway offers no presigned uploads: its store is not S3 (TANDEM_STORE=s3://...)")
    try:
        doc = json.loads(body)
        client_id, size, kind = doc["client_batch_id"], doc["bytes"], doc.get("kind", "parquet")
        assert isinstance(client_id, str) and wire.CLIENT_ID.fullmatch(client_id)
        assert type(size) is int and size >= 1 and kind in ("parquet", "sealed", *WIRE_KINDS)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise Refused(400, "body must be JSON {client_batch_id, bytes: positive integer, "
                      "kind: parquet|sealed|wire|sealed-wire}") from None
    limit = min(size, gw.settings.max_batch_bytes)
    if size > gw.settings.max_batch_bytes:
        raise Refused(413, f"{size} bytes, the limit is {gw.settings.max_batch_bytes} per batch")
    install = got[signing.INSTALL]
    _claim_nonce(gw, got)
    day = state.utc_day()
    slot = state.claim_slot(gw.store, day, "install", install, gw.settings.gateway_max_install_batches_per_day)
    if slot is None:
        raise Refused(429, f"this install has landed its batches for {day} (UTC); retry after midnight UTC",
                      {"Retry-After": str(state.seconds_to_midnight())})
    name = hashlib.sha256(f"{install}|{client_id}".encode()).hexdigest()[:24]
    if kind in WIRE_KINDS:  # staged: the gateway checks and converts it on POST /v1/uploads/complete
        state.release_slot(gw.store, slot)  # counted when it lands
        key = f"{state.staged_prefix(install)}{name}{WIRE_KINDS[kind]}"
        limit = min(size, gw.settings.gateway_max_body_bytes)
    else:
        suffix = sealing.SEALED_SUFFIX if kind == "sealed" else ".parquet"
        key = f"{INCOMING}dt={day}/{install[:16]}/{name}{suffix}"
    post = gw.store.client.generate_presigned_post(
        gw.store.bucket, gw.store._key(key), Conditions=[["content-length-range", 1, limit]], ExpiresIn=300)
    return {"url": post["url"], "fields": post["fields"], "key": key, "expires_in": 300, "max_bytes": limit}


def complete(gw: Gateway, request: Request, body: bytes) -> tuple[int, dict, dict]:
    """A wire batch the install put into its staging prefix with a presigned POST: checked and landed
    exactly like a batch sent through the gateway, then the staged object is deleted (landed or refused)."""
    got, _ = signed(gw, request, body)
    try:
        key = json.loads(body)["key"]
        assert isinstance(key, str)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise Refused(400, "body must be JSON {key: the key /v1/uploads granted}") from None
    prefix = state.staged_prefix(got[signing.INSTALL])
    name = key[len(prefix):] if key.startswith(prefix) else ""
    if not re.fullmatch(r"[0-9a-f]{24}(\.json\.gz|\.sealed)", name):
        raise Refused(400, "key is not one /v1/uploads granted to this install")
    try:
        data = gw.store.get(key)
    except NotFound:
        raise Refused(404, "nothing was uploaded at that key (or it expired and was completed already)") from None
    try:
        if len(data) > gw.settings.gateway_max_body_bytes:
            raise Refused(413, f"the staged batch holds {len(data)} bytes, the limit is {gw.settings.gateway_max_body_bytes}")
        return land(gw, got, data, key.endswith(".sealed"), None)
    finally:
        gw.store.delete(key)


def create_app(settings: Settings, store: Store) -> FastAPI:
    served = tasks.resolve(settings.task)  # once: every request is judged against this task
    gw = Gateway(settings, store, served, attestation.enabled(settings), {})
    app = FastAPI(title="Tandem device gateway", version="1",
                  description="Wire format v1 and request signing: docs/wire-format.md")
    app.state.gateway = gw

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "task": served.tag}

    @app.get("/v1/task")
    def task() -> dict:
        return {"task": served.tag, "format": wire.FORMAT, "columns": wire.column_types(served),
                "classes": list(features.of(served).classes)}

    @app.post("/v1/enroll", status_code=201, responses={200: {}, 400: ERROR, 401: ERROR, 413: ERROR},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["public_key", "attestation"],
                  "properties": {"public_key": {"type": "string"}, "attestation": {"type": "object"}}}}}}})
    async def enroll_route(request: Request):
        body = await read_body(request, ENROLL_MAX_BYTES)
        status, answer = await run_in_threadpool(enroll, gw, request, body)
        return JSONResponse(answer, status_code=status)

    @app.post("/v1/batches", status_code=201,
              responses={200: {}, 400: ERROR, 401: ERROR, 409: ERROR, 413: ERROR, 415: ERROR, 429: ERROR},
              openapi_extra={"requestBody": {"required": True, "content": {
                  wire.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
                  wire.SEALED_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def batches_route(request: Request):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (wire.CONTENT_TYPE, wire.SEALED_CONTENT_TYPE):
            raise Refused(415, f"Content-Type must be {wire.CONTENT_TYPE} (gzip) or {wire.SEALED_CONTENT_TYPE}")
        sealed = ctype == wire.SEALED_CONTENT_TYPE
        if not sealed and request.headers.get("content-encoding", "").lower() != "gzip":
            raise Refused(415, f"{wire.CONTENT_TYPE} must be sent with Content-Encoding: gzip")
        body = await read_body(request, settings.gateway_max_body_bytes)
        status, answer, headers = await run_in_threadpool(upload, gw, request, body, sealed)
        return JSONResponse(answer, status_code=status, headers=headers)

    @app.post("/v1/uploads", responses={400: ERROR, 401: ERROR, 404: ERROR, 413: ERROR, 429: ERROR},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["client_batch_id", "bytes"],
                  "properties": {"client_batch_id": {"type": "string"}, "bytes": {"type": "integer"},
                                 "kind": {"type": "string", "enum": ["parquet", "sealed", *WIRE_KINDS]}}}}}}})
    async def uploads_route(request: Request):
        body = await read_body(request, ENROLL_MAX_BYTES)
        return await run_in_threadpool(presign, gw, request, body)

    @app.post("/v1/uploads/complete", status_code=201,
              responses={200: {}, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 413: ERROR, 429: ERROR},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}}}}})
    async def complete_route(request: Request):
        body = await read_body(request, ENROLL_MAX_BYTES)
        status, answer, headers = await run_in_threadpool(complete, gw, request, body)
        return JSONResponse(answer, status_code=status, headers=headers)

    @app.get("/v1/releases/{channel}", responses={400: ERROR, 404: ERROR})
    def release_route(channel: str) -> dict:
        try:
            found = releases.describe(store, settings.model_name, channel)
        except ReleaseError as e:
            raise HTTPException(400 if "not a channel name" in str(e) else 404, str(e)) from None
        if found is None:
            raise HTTPException(404, f"channel {channel!r} of {settings.model_name} points to no release yet")
        return found

    @app.get("/v1/releases/{model}/{version}/files/{name}", responses={400: ERROR, 404: ERROR})
    def release_file(model: str, version: str, name: str) -> Response:
        if model != settings.model_name:
            raise HTTPException(404, f"this gateway serves {settings.model_name}, not {model[:60]!r}")
        try:
            check_version(version)
            manifest = json.loads(store.get(release_prefix(model, version) + "manifest.json"))
        except (ReleaseError, NotFound):
            raise HTTPException(404, f"there is no release {model}/{version[:12]}") from None
        if name not in manifest.get("files", {}):  # only what the manifest names: never another key
            raise HTTPException(404, f"{name[:60]!r} is not a file of {model}/{version}")
        try:
            data = store.get(release_prefix(model, version) + name)
        except NotFound:
            raise HTTPException(404, f"{name[:60]!r} of {model}/{version} is missing from the store") from None
        return Response(data, media_type="application/octet-stream")

    return app
