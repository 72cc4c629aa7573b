"""The reference set: raw recordings and labels from the team's own test devices, registered in the
store (``reference/<model>/v<N>/``) and the only place raw inputs ever come from on the server.

The production flow scores candidates, runs the update gate and cuts golden vectors from it, so a
server with nothing but the store can gate a release. A registration is checksummed and versioned:
``recordings.npz`` (create-only) and then its ``manifest.json`` (the sha256, rows, devices, labels);
the latest complete version is the one in use, and a recording whose bytes no longer match its
manifest is refused.

``recordings.npz`` holds five arrays of one row per window: ``windows`` (n, window, channels) raw
sensor samples, ``labels`` (n,) class names, ``devices`` (n,) test-device names, ``window_keys`` (n,)
stable per window on its device, ``captured_at`` (n,) datetime64[ms].
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from tandem.contract import features
from tandem.data.store import NotFound, Store, get_json, put_json, sha256_hex
from tandem.data.store_keys import REFERENCE
from tandem.task import Task
from tandem.task.kinds import Kind

ARRAYS = ("windows", "labels", "devices", "window_keys", "captured_at")
# optional: what the test devices' app sends as their identity (pseudonym, window id per window), so that
# their uploads are recognised by who sent them where feature values repeat genuinely (tabular tasks)
IDENTITY_ARRAYS = ("pseudonyms", "window_ids")
_VERSION = re.compile(r"^v(\d+)$")


class ReferenceError(ValueError):
    """A reference set that is missing, malformed or changed since it was registered."""


@dataclass
class ReferenceUser:
    """One test device's recordings, in capture order, featurized on the server."""

    user_id: str
    features: np.ndarray  # (n, n_features)
    labels: np.ndarray  # (n,) class names, or numeric targets
    windows: np.ndarray  # (n, window, channels) raw
    window_keys: list[str]
    captured_at: np.ndarray  # (n,) datetime64[ms]
    pseudonyms: tuple[str, ...] = ()  # the device's pseudonym(s), when the registration names them
    window_ids: tuple[str, ...] = ()
    kind: Kind | None = field(default=None, repr=False)  # the task's kind: what its labels train as

    @property
    def y(self) -> np.ndarray:
        """Class indices in the model's order, or the numeric targets."""
        return self.kind.targets(self.labels)


def _labels(values) -> np.ndarray:
    """Numbers (numeric targets) as float64, anything else (class names) as text."""
    values = np.asarray(values)
    return values.astype(np.float64) if values.dtype.kind in "fiub" else values.astype(str)


def recordings_bytes(devices: dict[str, dict]) -> bytes:
    """A ``recordings.npz`` from per-device arrays (``windows``, ``labels``, ``window_keys``, ``captured_at``)."""
    names = list(devices)
    arrays = {
        "windows": np.concatenate([np.asarray(devices[d]["windows"], np.float64) for d in names]),
        "labels": np.concatenate([_labels(devices[d]["labels"]) for d in names]),
        "devices": np.concatenate([np.full(len(devices[d]["labels"]), d) for d in names]).astype(str),
        "window_keys": np.concatenate([np.asarray(devices[d]["window_keys"]).astype(str) for d in names]),
        "captured_at": np.concatenate([np.asarray(devices[d]["captured_at"]).astype("datetime64[ms]") for d in names]),
    }
    for name in IDENTITY_ARRAYS:
        if all(name in devices[d] for d in names):
            arrays[name] = np.concatenate([np.asarray(devices[d][name]).astype(str) for d in names])
    sink = io.BytesIO()
    np.savez_compressed(sink, **arrays)
    return sink.getvalue()


def _read(data: bytes, task: Task) -> dict[str, np.ndarray]:
    """The arrays of a ``recordings.npz`` of `task`, checked; a ReferenceError says what is wrong."""
    featurization = features.of(task)
    window, channels = featurization.window, featurization.channels
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS + IDENTITY_ARRAYS if name in npz.files}
    except Exception as exc:
        raise ReferenceError(f"not a recordings .npz file ({type(exc).__name__}); see `tandem reference add --help`") from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise ReferenceError(f"recordings lack the array(s) {', '.join(missing)}; expected {', '.join(ARRAYS)}")
    n = len(arrays["labels"])
    windows = arrays["windows"]
    if n == 0:
        raise ReferenceError("recordings hold no windows")
    if windows.shape != (n, window, len(channels)):
        raise ReferenceError(f"windows have shape {windows.shape}; expected ({n}, {window}, {len(channels)}): "
                             f"{window} samples of {', '.join(channels)}")
    if not np.isfinite(windows.astype(np.float64)).all():
        raise ReferenceError("windows hold NaN or infinite samples")
    problem = featurization.kind.label_problem(arrays["labels"])
    if problem:
        raise ReferenceError(problem)
    for name in ("devices", "window_keys", "captured_at", *(a for a in IDENTITY_ARRAYS if a in arrays)):
        if len(arrays[name]) != n:
            raise ReferenceError(f"{name} has {len(arrays[name])} entries for {n} windows")
    return arrays


def _versions(store: Store, model: str) -> list[int]:
    """The complete versions (those with a manifest), oldest first."""
    found = set()
    for key in store.list(f"{REFERENCE}{model}/"):
        parts = key[len(f"{REFERENCE}{model}/"):].split("/")
        if len(parts) == 2 and parts[1] == "manifest.json" and _VERSION.match(parts[0]):
            found.add(int(_VERSION.match(parts[0]).group(1)))
    return sorted(found)


def latest_manifest(store: Store, model: str) -> dict | None:
    versions = _versions(store, model)
    return get_json(store, f"{REFERENCE}{model}/v{versions[-1]}/manifest.json") if versions else None


def add(store: Store, model: str, data: bytes, task: Task, source: str = "") -> dict:
    """Register recordings of `task` as the next version; the same bytes as the latest version register
    nothing new. Returns the manifest of the version in use."""
    arrays = _read(data, task)
    digest = sha256_hex(data)
    latest = latest_manifest(store, model)
    if latest is not None and latest["sha256"] == digest:
        return latest
    version = (latest["version"] if latest else 0) + 1
    prefix = f"{REFERENCE}{model}/v{version}/"
    if not store.put(prefix + "recordings.npz", data, if_absent=True):
        raise ReferenceError(f"{prefix} is being registered by another process; try again")
    label_summary = features.of(task).kind.label_summary(arrays["labels"])
    manifest = {"version": version, "model": model, "key": prefix + "recordings.npz", "sha256": digest,
                "size": len(data), "rows": len(arrays["labels"]), "devices": int(len(np.unique(arrays["devices"]))),
                **label_summary, "source": source,
                "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    put_json(store, prefix + "manifest.json", manifest, if_absent=True)  # last: it marks the version complete
    return manifest


def load(store: Store, model: str, task: Task) -> list[ReferenceUser]:
    """The reference set of `task` in use, one ReferenceUser per test device (in name order, rows in
    capture order), its features computed here from the raw windows."""
    featurization = features.of(task)
    manifest = latest_manifest(store, model)
    if manifest is None:
        raise ReferenceError(f"no reference set for {model} in the store ({REFERENCE}{model}/): "
                             f"register the team's test-device recordings with `tandem reference add FILE`")
    try:
        data = store.get(manifest["key"])
    except NotFound:
        raise ReferenceError(f"reference set v{manifest['version']} lost its recordings ({manifest['key']})") from None
    if sha256_hex(data) != manifest["sha256"]:
        raise ReferenceError(f"reference set v{manifest['version']} changed since it was registered (sha256 mismatch)")
    arrays = _read(data, task)
    users = []
    for device in sorted(set(arrays["devices"].astype(str))):
        rows = np.flatnonzero(arrays["devices"].astype(str) == device)
        rows = rows[np.argsort(arrays["captured_at"][rows], kind="stable")]
        windows = arrays["windows"][rows].astype(np.float64)
        identity = {name: tuple(sorted(set(arrays[name][rows].astype(str).tolist())))
                    for name in IDENTITY_ARRAYS if name in arrays}
        users.append(ReferenceUser(device, featurization.featurize(windows), featurization.kind.labels(arrays["labels"][rows]),
                                   windows, arrays["window_keys"][rows].astype(str).tolist(),
                                   arrays["captured_at"][rows].astype("datetime64[ms]"), **identity,
                                   kind=featurization.kind))
    return users
