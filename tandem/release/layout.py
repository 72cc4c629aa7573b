"""Releases in the store: ``releases/<model>/<version>/`` (immutable, checksummed, manifest last) and
channel pointers ``channels/<model>/<channel>.json`` (moved atomically). What an app build pulls.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tandem.data.store import NotFound, Store, get_json, put_json, sha256_hex

RELEASES = "releases/"
CHANNELS = "channels/"
MANIFEST = "manifest.json"


class ReleaseError(RuntimeError):
    pass


class IntegrityError(ReleaseError):
    """A pulled file does not match its manifest."""


def release_prefix(model: str, version: str | int) -> str:
    return f"{RELEASES}{model}/{version}/"


def channel_key(model: str, channel: str) -> str:
    return f"{CHANNELS}{model}/{channel}.json"


def _put_immutable(store: Store, key: str, data: bytes) -> None:
    """Create-only; re-writing identical bytes (a resumed run) is fine, different bytes are refused."""
    if not store.put(key, data, if_absent=True) and sha256_hex(store.get(key)) != sha256_hex(data):
        raise ReleaseError(f"{key} already exists with other content: releases are immutable")


def write_release(store: Store, model: str, version: str | int, files: dict[str, bytes], fields: dict) -> dict:
    """Write every file, then the manifest naming each with its sha256 and size. Until the manifest
    exists the release does not exist for any reader."""
    prefix = release_prefix(model, version)
    if store.exists(prefix + MANIFEST):
        raise ReleaseError(f"release {model}/{version} is already published")
    for name, data in files.items():
        _put_immutable(store, prefix + name, data)
    manifest = {
        "model": model,
        "version": str(version),
        **fields,
        "files": {name: {"sha256": sha256_hex(data), "size": len(data)} for name, data in sorted(files.items())},
    }
    _put_immutable(store, prefix + MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest




def list_releases(store: Store, model: str | None = None) -> list[dict]:
    """Complete releases (those with a manifest), oldest version first."""
    keys = [k for k in store.list(RELEASES + (f"{model}/" if model else "")) if k.endswith("/" + MANIFEST)]
    manifests = [get_json(store, k) for k in keys]
    return sorted(manifests, key=lambda m: (m["model"], int(m["version"]) if str(m["version"]).isdigit() else 0))


def read_channel(store: Store, model: str, channel: str) -> dict | None:
    try:
        return get_json(store, channel_key(model, channel))
    except NotFound:
        return None


def list_channels(store: Store, model: str) -> dict[str, dict]:
    return {Path(k).stem: get_json(store, k) for k in store.list(f"{CHANNELS}{model}/") if k.endswith(".json")}


def set_channel(store: Store, model: str, channel: str, version: str | int, reason: str = "",
                history: list[str] | None = None) -> dict:
    """Point a channel at a complete release, in one atomic write. `history` (newest first) defaults
    to the versions it pointed to before; a rollback passes it shortened instead."""
    manifest_key = release_prefix(model, version) + MANIFEST
    try:
        manifest_bytes = store.get(manifest_key)
    except NotFound:
        raise ReleaseError(f"no complete release {model}/{version} to point {channel!r} at") from None
    previous = read_channel(store, model, channel)
    if history is None:
        history = ([previous["version"]] + previous.get("history", [])) if previous else []
    pointer = {
        "model": model,
        "channel": channel,
        "version": str(version),
        "manifest": manifest_key,
        "manifest_sha256": sha256_hex(manifest_bytes),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reason": reason,
        "history": history[:20],
    }
    put_json(store, channel_key(model, channel), pointer)
    return pointer


def fetch_release(store: Store, model: str, channel: str | None = "staging", version: str | int | None = None,
                  names: list[str] | None = None) -> tuple[dict, bytes, dict[str, bytes]]:
    """(manifest, manifest bytes, {file: bytes}) of a release, by channel or version, every file
    verified against the manifest (and the manifest against the channel's checksum); on any
    mismatch raise IntegrityError. `names` limits which files are read (default: all)."""
    if version is None:
        pointer = read_channel(store, model, channel)
        if pointer is None:
            raise ReleaseError(f"channel {channel!r} of {model} points to no release yet")
        manifest_bytes = store.get(pointer["manifest"])
        if sha256_hex(manifest_bytes) != pointer["manifest_sha256"]:
            raise IntegrityError(f"manifest of {model}/{pointer['version']} does not match the channel's checksum")
        version = pointer["version"]
    else:
        manifest_bytes = store.get(release_prefix(model, version) + MANIFEST)
    manifest = json.loads(manifest_bytes)
    files = {}
    for name in names or list(manifest["files"]):
        meta = manifest["files"][name]
        data = store.get(release_prefix(model, version) + name)
        if len(data) != meta["size"] or sha256_hex(data) != meta["sha256"]:
            raise IntegrityError(
                f"{name} of {model}/{version}: sha256 {sha256_hex(data)} ({len(data)} bytes) does not match "
                f"the manifest's {meta['sha256']} ({meta['size']} bytes)"
            )
        files[name] = data
    return manifest, manifest_bytes, files


def pull(store: Store, model: str, out: str | os.PathLike, channel: str | None = "staging",
         version: str | int | None = None) -> dict:
    """Download a release into `out`, verifying every file against the manifest first. On any
    mismatch raise IntegrityError and write nothing into `out`."""
    try:
        manifest, manifest_bytes, files = fetch_release(store, model, channel, version)
    except IntegrityError as e:
        raise IntegrityError(f"{e}; nothing was written") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=out.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / MANIFEST).write_bytes(manifest_bytes)
        out.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
