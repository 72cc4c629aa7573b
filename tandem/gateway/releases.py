"""Release discovery for apps: a channel's signed manifest and where to fetch each file, so an app
verifies it with its pinned key exactly as `tandem pull` does (the gateway vouches for nothing)."""

from __future__ import annotations

import base64
import json

from tandem.data.store import NotFound, S3Store, Store
from tandem.release.layout import MANIFEST, ReleaseError, check_channel, check_version, read_channel, release_prefix
from tandem.release.signing import SIGNATURE

URL_SECONDS = 900


def describe(store: Store, model: str, channel: str) -> dict | None:
    """None when the channel points nowhere. Raises ReleaseError on a bad channel name."""
    check_channel(channel)
    pointer = read_channel(store, model, channel)
    if pointer is None:
        return None
    version = check_version(pointer.get("version"))
    prefix = release_prefix(model, version)
    try:
        manifest = store.get(prefix + MANIFEST)
    except NotFound:
        raise ReleaseError(f"channel {channel!r} points to {model}/{version}, which is not in the store") from None
    try:
        signature = base64.b64encode(store.get(prefix + SIGNATURE)).decode()
    except NotFound:
        signature = None  # an unsigned release: the app refuses it, as `tandem pull` does
    listed = json.loads(manifest).get("files", {})
    files = [{"name": name, "sha256": meta.get("sha256"), "size": meta.get("size"),
              "url": file_url(store, model, version, name)} for name, meta in sorted(listed.items())]
    return {"model": model, "channel": channel, "version": version, "pointer": pointer,
            "manifest": base64.b64encode(manifest).decode(), "signature": signature, "files": files}


def file_url(store: Store, model: str, version: str, name: str) -> str:
    """A presigned GET on S3, else the gateway's own file route."""
    if isinstance(store, S3Store):
        return store.client.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": store._key(release_prefix(model, version) + name)},
            ExpiresIn=URL_SECONDS)
    return f"/v1/releases/{model}/{version}/files/{name}"
