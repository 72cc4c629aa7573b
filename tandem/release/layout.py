"""Releases in the store: ``releases/<model>/<version>/`` (immutable, checksummed, manifest last) and
channel pointers ``channels/<model>/<channel>.json`` (moved atomically). What an app build pulls.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from tandem.data.store import NotFound, Store, get_json, put_json, sha256_hex
from tandem.data.store_keys import CHANNELS, RELEASES
from tandem.release import pointers
from tandem.release.signing import SIGNATURE, SignatureError, Signer, TrustedKeys

MANIFEST = "manifest.json"


class ReleaseError(RuntimeError):
    pass


class IntegrityError(ReleaseError):
    """A pulled file does not match its manifest, or the manifest is not signed by a pinned key."""


# What a release file, a channel and a version may be called: plain names, never paths.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
VERSION = re.compile(r"[0-9]{1,9}")


def check_channel(channel: str) -> str:
    if not CHANNEL_NAME.fullmatch(channel or ""):
        raise ReleaseError(f"channel {channel!r} is not a channel name (lowercase letters, digits, - and _)")
    return channel


def check_version(version: str | int) -> str:
    if not VERSION.fullmatch(str(version)):
        raise ReleaseError(f"version {version!r} is not a release version (a positive number)")
    return str(version)


def _check_file_name(name: str) -> str:
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or name in (MANIFEST, SIGNATURE):
        raise IntegrityError(f"the manifest names a file {str(name)[:80]!r}, which is not a plain file name: refused")
    return name


def release_prefix(model: str, version: str | int) -> str:
    return f"{RELEASES}{model}/{version}/"


def channel_key(model: str, channel: str) -> str:
    return f"{CHANNELS}{model}/{channel}.json"


def _put_immutable(store: Store, key: str, data: bytes) -> None:
    """Create-only; re-writing identical bytes (a resumed run) is fine, different bytes are refused."""
    if not store.put(key, data, if_absent=True) and sha256_hex(store.get(key)) != sha256_hex(data):
        raise ReleaseError(f"{key} already exists with other content: releases are immutable")


def strict_json(value):
    """`value` with every non-finite float as null: an app's JSON parser (Foundation's) refuses NaN, and
    a gate's "not measured" (a user whose phone kept the base has no loss after) is one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_release(store: Store, model: str, version: str | int, files: dict[str, bytes], fields: dict,
                  signer: Signer | None = None) -> dict:
    """Write every file, the manifest's signature, then the manifest naming each file with its sha256
    and size. Until the manifest exists the release does not exist for any reader. Without a signer
    the release is unsigned, and `pull` refuses it."""
    prefix = release_prefix(model, version)
    if store.exists(prefix + MANIFEST):
        raise ReleaseError(f"release {model}/{version} is already published")
    for name in files:
        _check_file_name(name)
    for name, data in files.items():
        _put_immutable(store, prefix + name, data)
    manifest = {
        "model": model,
        "version": str(version),
        **strict_json(fields),
        "files": {name: {"sha256": sha256_hex(data), "size": len(data)} for name, data in sorted(files.items())},
    }
    if signer is not None:
        manifest["signed_by"] = signer.key_id
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False).encode()
    if signer is not None:
        _put_immutable(store, prefix + SIGNATURE, signer.sign(manifest_bytes))
    _put_immutable(store, prefix + MANIFEST, manifest_bytes)
    return manifest




def list_releases(store: Store, model: str | None = None) -> list[dict]:
    """Complete releases (those with a manifest), oldest version first."""
    keys = [k for k in store.list(RELEASES + (f"{model}/" if model else "")) if k.endswith("/" + MANIFEST)]
    manifests = [get_json(store, k) for k in keys]
    return sorted(manifests, key=lambda m: (m["model"], int(m["version"]) if str(m["version"]).isdigit() else 0))


def read_channel(store: Store, model: str, channel: str) -> dict | None:
    """The channel's pointer, or None; a pointer that is not a JSON object is an IntegrityError."""
    try:
        pointer = get_json(store, channel_key(model, channel))
    except NotFound:
        return None
    except ValueError:
        pointer = None
    if not isinstance(pointer, dict):
        raise IntegrityError(f"the pointer of channel {channel!r} of {model} ({channel_key(model, channel)}) is not a JSON "
                             "object: the store's copy is damaged; re-point the channel (`tandem promote --version N` "
                             "for production, the next run for staging)")
    return pointer


def list_channels(store: Store, model: str) -> dict[str, dict]:
    found = {Path(k).stem: read_channel(store, model, Path(k).stem) for k in store.list(f"{CHANNELS}{model}/")
             if k.endswith(".json")}
    return {name: pointer for name, pointer in found.items() if pointer is not None}


def set_channel(store: Store, model: str, channel: str, version: str | int, reason: str = "",
                history: list[str] | None = None, signer: Signer | None = None) -> dict:
    """Point a channel at a complete release, in one atomic write, signed by `signer`
    (`tandem.release.pointers`: `pull` refuses an unsigned pointer). `history` (newest first) defaults
    to the versions it pointed to before; a rollback passes it shortened instead."""
    check_channel(channel)
    check_version(version)
    manifest_key = release_prefix(model, version) + MANIFEST
    try:
        manifest_bytes = store.get(manifest_key)
    except NotFound:
        raise ReleaseError(f"no complete release {model}/{version} to point {channel!r} at") from None
    try:
        previous = read_channel(store, model, channel)
    except IntegrityError:  # a damaged pointer is replaced, its history lost
        previous = None
    if history is None:
        history = ([previous["version"]] + previous.get("history", [])) if previous else []
    issued_at = pointers.now()
    pointer = {
        "model": model,
        "channel": channel,
        "version": str(version),
        "manifest": manifest_key,
        "manifest_sha256": sha256_hex(manifest_bytes),
        "issued_at": issued_at,
        "updated_at": issued_at,
        "reason": reason,
        "history": history[:20],
    }
    if signer is not None:
        pointer = pointers.sign(pointer, signer)
    put_json(store, channel_key(model, channel), pointer)
    return pointer


def fetch_release(store: Store, model: str, channel: str | None = "staging", version: str | int | None = None,
                  names: list[str] | None = None, trust: TrustedKeys | None = None,
                  min_version: int | None = None) -> tuple[dict, bytes, dict[str, bytes]]:
    """(manifest, manifest bytes, {file: bytes}) of a release, by channel or version, every file
    verified against the manifest and, with `trust`, the channel pointer's and the manifest's
    signatures against the pinned keys; a version below `min_version` is refused (a rollback the
    app build did not ask for). On any mismatch raise IntegrityError. `names` limits which files are
    read (default: all)."""
    if version is None:
        pointer = read_channel(store, model, check_channel(channel))
        if pointer is None:
            raise ReleaseError(f"channel {channel!r} of {model} points to no release yet")
        if trust is not None:
            try:
                pointers.verify(pointer, trust, model, channel)
            except pointers.PointerError as e:
                raise IntegrityError(str(e)) from None
        version = check_version(pointer.get("version"))
        manifest_bytes = _get(store, release_prefix(model, version) + MANIFEST, model, version)
        if sha256_hex(manifest_bytes) != pointer.get("manifest_sha256"):
            raise IntegrityError(f"manifest of {model}/{version} does not match the channel's checksum")
    else:
        version = check_version(version)
        manifest_bytes = _get(store, release_prefix(model, version) + MANIFEST, model, version)
    try:
        pointers.check_minimum(version, min_version, f"{model}/{version}")
    except pointers.PointerError as e:
        raise IntegrityError(str(e)) from None
    if trust is not None:
        try:
            signature = store.get(release_prefix(model, version) + SIGNATURE)
        except NotFound:
            signature = None
        try:
            trust.verify(manifest_bytes, signature)
        except SignatureError as e:
            raise IntegrityError(f"{model}/{version}: {e}") from None
    try:
        manifest = json.loads(manifest_bytes)
        listed = manifest["files"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise IntegrityError(f"manifest of {model}/{version} is malformed") from None
    if str(manifest.get("model")) != model or str(manifest.get("version")) != version:
        raise IntegrityError(f"the manifest at {model}/{version} is for {manifest.get('model')}/{manifest.get('version')}")
    for name in listed:
        _check_file_name(name)
    files = {}
    for name in names or list(listed):
        meta = listed[name]
        data = store.get(release_prefix(model, version) + name)
        if len(data) != meta["size"] or sha256_hex(data) != meta["sha256"]:
            raise IntegrityError(
                f"{name} of {model}/{version}: sha256 {sha256_hex(data)} ({len(data)} bytes) does not match "
                f"the manifest's {meta['sha256']} ({meta['size']} bytes)"
            )
        files[name] = data
    return manifest, manifest_bytes, files


def _get(store: Store, key: str, model: str, version: str) -> bytes:
    try:
        return store.get(key)
    except NotFound:
        raise ReleaseError(f"there is no release {model}/{version}") from None


def pull(store: Store, model: str, out: str | os.PathLike, trust: TrustedKeys, channel: str | None = "staging",
         version: str | int | None = None, min_version: int | None = None) -> dict:
    """Download a release into `out`, verifying the channel pointer's and the manifest's signatures
    against the pinned keys, the version against `min_version` and every file against the manifest
    first. On any mismatch raise IntegrityError and write nothing."""
    if not isinstance(trust, TrustedKeys) or not trust.keys:
        raise IntegrityError("no public key pinned: pass --public-key or set TANDEM_RELEASE_PUBLIC_KEYS; nothing was written")
    try:
        manifest, manifest_bytes, files = fetch_release(store, model, channel, version, trust=trust,
                                                        min_version=min_version)
    except IntegrityError as e:
        raise IntegrityError(f"{e}; nothing was written") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=out.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / MANIFEST).write_bytes(manifest_bytes)
        (staging / SIGNATURE).write_bytes(store.get(release_prefix(model, manifest["version"]) + SIGNATURE))
        out.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
