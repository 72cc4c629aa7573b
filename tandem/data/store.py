"""One store interface, two backends with the same key layout: a local folder and S3.

Keys are '/'-separated paths such as ``incoming/<device>/<batch>.parquet`` or
``channels/<model>/staging.json``. Writes are atomic: a reader sees a whole object or none.
``if_absent`` writes are conditional (create-only), which is what makes releases immutable and the
ledger count each batch exactly once, even with two runs racing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tandem.settings import Settings


class NotFound(KeyError):
    """The key does not exist in the store."""


class NotRegular(ValueError):
    """The key is a symlink or not a regular file (a local store): refused without being read."""


def hidden(key: str) -> bool:
    """Dot-names (temporary files, OS droppings) are not objects, on every backend alike."""
    return any(part.startswith(".") for part in key.split("/"))


class Store(Protocol):
    url: str

    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_json(store: Store, key: str) -> Any:
    return json.loads(store.get(key))


def put_json(store: Store, key: str, obj: Any, *, if_absent: bool = False) -> bool:
    return store.put(key, json.dumps(obj, indent=2, sort_keys=True).encode(), if_absent=if_absent)


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid store key {key!r}")
    return key


class LocalStore:
    """A folder laid out exactly like the bucket."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def get(self, key: str) -> bytes:
        """The object's bytes; a symlink anywhere under the root, or anything but a regular file
        (a FIFO, a device, /proc), is refused before a byte is read."""
        path = self._path(key)
        try:
            if any(p.is_symlink() for p in [path, *path.parents] if p.is_relative_to(self.root) and p != self.root):
                raise NotRegular(f"{key} is a symlink: refused")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as e:
            raise NotRegular(f"{key} cannot be opened as a regular file ({e.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise NotRegular(f"{key} is not a regular file: refused")
            data = f.read()
        return data

    def get_with_meta(self, key: str) -> tuple[bytes, dict]:
        """The bytes and what identifies this version of the object: size, modification time (epoch
        seconds: the upload time) and an etag that changes when the object is rewritten."""
        path = self._path(key)
        data = self.get(key)
        info = path.stat()
        return data, {"size": len(data), "modified": info.st_mtime_ns / 1e9, "etag": f"{info.st_mtime_ns}-{info.st_size}"}

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temporary name from a digest: a legal 255-byte name plus a prefix would not fit
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256_hex(path.name.encode())[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if if_absent:
                try:
                    os.link(tmp, path)  # atomic create-only: fails if the key exists
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, path)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return path.is_file() or path.is_symlink()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        search = base if base.is_dir() else base.parent
        if not search.exists():
            return []
        keys = []
        # every non-directory entry, symlinks included (never followed): a reader refuses them by
        # name (NotRegular) instead of their vanishing unseen
        for folder, dirs, names in os.walk(search, followlinks=False):
            links = [d for d in dirs if Path(folder, d).is_symlink()]
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in links]
            for name in names + links:
                key = Path(folder, name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not hidden(key):
                    keys.append(key)
        return sorted(keys)


class S3Store:
    """The same layout under ``s3://bucket/prefix``; any S3-compatible endpoint (MinIO, moto)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None,
                 timeout: float = 15.0):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, config=s3_config(timeout))

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise NotFound(key) from None
            raise

    def get_with_meta(self, key: str) -> tuple[bytes, dict]:
        """The bytes, size, LastModified (epoch seconds: the upload time) and ETag, in one GET."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise NotFound(key) from None
            raise
        data = response["Body"].read()
        return data, {"size": len(data), "modified": response["LastModified"].timestamp(), "etag": response.get("ETag", "")}

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
            return True
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if if_absent and code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        return sorted(k for k in keys if not hidden(k) and not k.endswith("/"))


def s3_config(timeout: float) -> Config:
    """Bounded waits: an endpoint that accepts and never answers fails a call after about
    2 x `timeout` (two attempts), not botocore's default 60 s x 5 attempts per call."""
    return Config(connect_timeout=min(5.0, timeout), read_timeout=timeout,
                  retries={"max_attempts": 2, "mode": "standard"})


def open_store(url: str, endpoint_url: str | None = None, timeout: float = 15.0) -> Store:
    """``s3://bucket/prefix`` opens S3; anything else is a local folder."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        return S3Store(bucket, prefix, endpoint_url=endpoint_url, timeout=timeout)
    return LocalStore(url)


def store_from_settings(settings: Settings) -> Store:
    return open_store(settings.store_url, settings.s3_endpoint_url, settings.s3_timeout_seconds)
