"""The sharing policy: which modified forms a device shares its windows in, versioned and recorded
in every batch (the ``policy`` column holds its name, the parquet metadata ``tandem.privacy.policy`` its
public JSON) and in every release (`SharingPolicy.public_dict`).

Forms (``pseudonymized`` is always on):

- **pseudonymized**: keyed HMAC of the user id; ``key_id`` names the key version (rotation).
- **anonymized**: the quasi-identifiers (device metadata) generalized along a fixed hierarchy on
  the device (`generalize`), and k enforced by the server over everything it keeps (`enforce_k`):
  groups with fewer than k distinct users are generalized further, or suppressed.
- **dp**: local differential privacy on every shared window: features clipped to `clip_bounds`
  and noised (Laplace or Gaussian, calibrated to the policy's epsilon), labels by k-ary randomized
  response; every window is charged to the user's privacy ledger on the device
  (`tandem.privacy.ledger`), and a user past the budget shares nothing more.
- **encrypted**: the batch is sealed on the device (`tandem.privacy.sealing`, AES-256-GCM); the server
  opens it in memory only.

Everything here is deterministic given the device's secret key: re-sharing the same windows gives
the same rows (noise seeded per window by a keyed digest), so it writes nothing new and costs no
budget. `local_view` is the deterministic part a device applies to its own plain data before Core
ML sees it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import math
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.contract.features import CLASSES, FEATURE_NAMES, SERIES, TASK, feature_bounds
from tandem.contract.schema import DEVICE_COLUMNS, LABEL_COLUMN, POLICY_COLUMN

Form = Literal["pseudonymized", "anonymized", "dp", "encrypted"]
FORMS: tuple[str, ...] = ("pseudonymized", "anonymized", "dp", "encrypted")  # canonical order in names
METADATA_KEY = b"tandem.policy"  # parquet schema metadata: the batch's policy, public JSON
POLICY_NAME_REGEX = r"^[a-z][a-z0-9_-]*(?:\+[a-z][a-z0-9_-]*)*/v[0-9]+$"

# --------------------------------------------------------------------------------------------
# Generalization hierarchy of the quasi-identifiers. Level 0 is the plain value; the top level "*".

SUPPRESSED = "*"
_MODEL = re.compile(r"^([A-Za-z]+)(\d*)(?:,\d+)?$")  # "iPhone15,2" -> ("iPhone", "15")
HIERARCHY_LEVELS = {"device_model": 3, "os_version": 2, "locale": 2, "app_version": 2}  # top level per column
HIERARCHY_DOC = {  # shapes only: no real value may appear in what is recorded with batches and releases
    "device_model": ["<family><major>,<minor>", "<family><major>", "<family>", "*"],
    "os_version": ["<major>.<minor>", "<major>", "*"],
    "locale": ["<language>_<REGION>", "<language>", "*"],
    "app_version": ["<major>.<minor>.<patch>", "<major>.<minor>", "*"],
}
# What a generalized (level >= 1) value looks like; the anonymized GX suite checks these.
GENERALIZED_REGEX = {
    "device_model": r"^(?:[A-Za-z]+[0-9]*|\*)$",
    "os_version": r"^(?:[0-9]+|\*)$",
    "locale": r"^(?:[a-z]{2,3}|\*)$",
    "app_version": r"^(?:[0-9]+\.[0-9]+|\*)$",
}


def _level_of(column: str, value: str) -> int:
    if value == SUPPRESSED:
        return HIERARCHY_LEVELS[column]
    if column == "device_model":
        m = _MODEL.match(value)
        if not m:
            return 0
        return 0 if "," in value else (1 if m.group(2) else 2)
    if column == "locale":
        return 1 if re.fullmatch(r"[a-z]{2,3}", value) else 0
    parts = value.split(".")
    if column == "os_version":
        return 1 if len(parts) == 1 else 0
    return 1 if len(parts) == 2 else 0  # app_version


def generalize(column: str, value: str, level: int) -> str:
    """`value` of a quasi-identifier column at `level` of its hierarchy (never less general than it
    already is). Unknown shapes go straight to the top: "*"."""
    top = HIERARCHY_LEVELS[column]
    level = min(max(level, _level_of(column, value)), top)
    if level == 0:
        return value
    if level >= top:
        return SUPPRESSED
    if column == "device_model":
        m = _MODEL.match(value)
        if not m:
            return SUPPRESSED
        return m.group(1) + m.group(2) if level == 1 else m.group(1)
    if column == "locale":
        lang = re.split(r"[_-]", value)[0].lower()
        return lang if re.fullmatch(r"[a-z]{2,3}", lang) else SUPPRESSED
    if column == "os_version":
        major = value.split(".")[0]
        return major if major.isdigit() else SUPPRESSED
    parts = value.split(".")  # app_version
    return ".".join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) else SUPPRESSED


def generalize_frame(frame: pd.DataFrame, levels: dict[str, int]) -> pd.DataFrame:
    out = frame.copy()
    for column, level in levels.items():
        mapping = {v: generalize(column, v, level) for v in out[column].unique()}
        out[column] = out[column].map(mapping).astype(frame[column].dtype)
    return out


# --------------------------------------------------------------------------------------------
# Clipping bounds of the DP form: the task's `sharing.dp_clip` (feature-name patterns -> [lo, hi],
# tighter than the validation ranges, which admit any device at its widest setting).


def clip_bounds() -> dict[str, tuple[float, float]]:
    """[lo, hi] of every feature under the DP form, in FEATURE_NAMES order: the first of the task's
    `sharing.dp_clip` patterns a feature's name matches, else the feature's plausible range (from
    tandem.contract.feature_ops)."""
    plausible = feature_bounds()
    patterns = list(TASK.sharing.dp_clip.items())
    bounds: dict[str, tuple[float, float]] = {}
    for name in FEATURE_NAMES:
        match = next((tuple(b) for pattern, b in patterns if fnmatch.fnmatchcase(name, pattern)), None)
        bounds[name] = match or plausible[name]
    return bounds


# --------------------------------------------------------------------------------------------
# The policy


class SharingPolicy(BaseModel):
    """A versioned sharing policy. Holds no secret: keys come from the environment only."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field("v1", pattern=r"^v[0-9]+$")
    forms: list[Form] = Field(default_factory=lambda: ["pseudonymized"])
    # anonymized
    k: int = Field(5, ge=2, description="every quasi-identifier combination the server keeps covers >= k users")
    device_levels: dict[str, int] = Field(
        default_factory=lambda: {c: 1 for c in DEVICE_COLUMNS},
        description="generalization level the device applies before sharing (>= 1 for each quasi-identifier)")
    max_suppression: float = Field(0.1, ge=0.0, le=1.0,
                                   description="fraction of users the server may suppress instead of generalizing further")
    # dp
    noise: Literal["laplace", "gaussian"] = "laplace"
    epsilon_features: float = Field(8.0, gt=0, description="per shared window, for its feature vector")
    epsilon_labels: float = Field(2.0, gt=0, description="per shared window, for its label (randomized response)")
    delta: float = Field(1e-6, gt=0, lt=1, description="for the Gaussian mechanism and for composing into (epsilon, delta)")
    user_budget_epsilon: float = Field(100.0, gt=0, description="a user whose composed epsilon would pass this shares nothing more")
    # encrypted
    encryption_key_id: str | None = Field(None, description="expected key id of the sealing key (None: whatever the env names)")

    @field_validator("forms")
    @classmethod
    def _canonical_forms(cls, forms: list[str]) -> list[str]:
        return [f for f in FORMS if f in set(forms) | {"pseudonymized"}]

    @field_validator("device_levels")
    @classmethod
    def _levels(cls, levels: dict[str, int]) -> dict[str, int]:
        unknown = set(levels) - set(DEVICE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown quasi-identifier columns: {sorted(unknown)}")
        full = {c: int(levels.get(c, 1)) for c in DEVICE_COLUMNS}
        for c, level in full.items():
            if not 1 <= level <= HIERARCHY_LEVELS[c]:
                raise ValueError(f"{c}: device level must be within [1, {HIERARCHY_LEVELS[c]}], got {level}")
        return full

    @property
    def name(self) -> str:
        """E.g. ``pseudonymized/v1`` or ``pseudonymized+anonymized+dp+encrypted/v1``: the ``policy`` column."""
        return "+".join(self.forms) + "/" + self.version

    def has(self, form: str) -> bool:
        return form in self.forms

    def fingerprint(self) -> str:
        """Digest of what decides a window's shared values (version, mechanisms, epsilons): noise
        seeds and ledger charges are per (window, fingerprint), so changing the budget or k does
        not re-noise (and re-charge) windows already shared."""
        fields = ("version", "noise", "epsilon_features", "epsilon_labels", "delta")
        d = {f: getattr(self, f) for f in fields} | {"dp": self.has("dp")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def public_dict(self) -> dict:
        """The full policy, no secrets: for batch metadata and the release manifest."""
        d = {"name": self.name, **self.model_dump(mode="json"), "fingerprint": self.fingerprint()}
        if self.has("dp"):
            d["clip_bounds"] = {k: list(v) for k, v in clip_bounds().items()}
            d["mechanism"] = {"features": self.noise, "labels": f"{len(CLASSES)}-ary randomized response",
                              "unit": "one shared window; every user's windows composed (dp-accounting PLD) in the device's privacy ledger",
                              "window_events": window_epsilon(self)}
        if self.has("anonymized"):
            d["hierarchy"] = HIERARCHY_DOC
        return d

    def window_events(self) -> list[dict]:
        """The privacy events of one shared window (none without the dp form)."""
        return window_epsilon(self) if self.has("dp") else []

    def public_json(self) -> str:
        return json.dumps(self.public_dict(), sort_keys=True)


PRESETS: dict[str, SharingPolicy] = {
    "pseudonymized": SharingPolicy(),
    "anonymized": SharingPolicy(forms=["anonymized"]),
    "dp": SharingPolicy(forms=["dp"]),
    "encrypted": SharingPolicy(forms=["encrypted"]),
    "all": SharingPolicy(forms=list(FORMS)),
}


def parse_name(name: str) -> tuple[list[str], str]:
    """``"pseudonymized+dp/v1"`` -> (["pseudonymized", "dp"], "v1"). Raises ValueError on anything else."""
    if not isinstance(name, str) or not re.fullmatch(POLICY_NAME_REGEX, name):
        raise ValueError(f"not a policy name: {name!r}")
    forms, version = name.split("/")
    forms = forms.split("+")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown} in policy {name!r}")
    return forms, version


def load_policy(spec: "str | Path | SharingPolicy | dict | None" = None) -> SharingPolicy:
    """A policy from a `SharingPolicy`, a dict, a path to a JSON file, a preset name
    (pseudonymized, anonymized, dp, encrypted, all) or a policy name (``anonymized+dp/v1``:
    those forms with default parameters). None: the default (pseudonymized/v1)."""
    if spec is None:
        return SharingPolicy()
    if isinstance(spec, SharingPolicy):
        return spec
    if isinstance(spec, dict):
        d = {k: v for k, v in spec.items() if k in SharingPolicy.model_fields}
        return SharingPolicy.model_validate(d)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text].model_copy(deep=True)
    if text.endswith(".json") or Path(text).is_file():
        return load_policy(json.loads(Path(text).read_text()))
    forms, version = parse_name(text)
    return SharingPolicy(forms=forms, version=version)


def policy_from_metadata(metadata: dict | None) -> SharingPolicy | None:
    """The policy recorded in a batch's parquet schema metadata, or None."""
    raw = (metadata or {}).get(METADATA_KEY)
    if not raw:
        return None
    return load_policy(json.loads(raw))


# --------------------------------------------------------------------------------------------
# Local differential privacy on one window


def _zcdp_rho(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP implies (epsilon, delta)-DP (Bun & Steinke 2016, Prop. 1.3)."""
    log = math.log(1 / delta)
    return (math.sqrt(epsilon + log) - math.sqrt(log)) ** 2


def noise_scales(policy: SharingPolicy) -> np.ndarray:
    """Per-feature noise scale (Laplace b or Gaussian sigma), in FEATURE_NAMES order.

    Each feature clipped to [lo, hi] is a coordinate of width w = hi - lo. Laplace: scale
    d*w/eps gives the whole vector eps-DP (L1, each coordinate spending eps/d). Gaussian: in
    units of w the L2 sensitivity is sqrt(d); sigma = sqrt(d)/sqrt(2 rho) w is rho-zCDP, with rho
    the largest that implies (eps, delta)-DP."""
    widths = np.array([hi - lo for lo, hi in clip_bounds().values()])
    d, eps = len(widths), policy.epsilon_features
    if policy.noise == "laplace":
        return widths * d / eps
    return widths * math.sqrt(d) / math.sqrt(2 * _zcdp_rho(eps, policy.delta))


def rr_keep_probability(epsilon: float, classes: int = len(CLASSES)) -> float:
    return math.exp(epsilon) / (math.exp(epsilon) + classes - 1)


def window_rng(key: bytes, policy: SharingPolicy, window_id: str) -> np.random.Generator:
    """Deterministic per window and policy, unpredictable without the device's key."""
    digest = hmac.new(key, f"tandem-dp|{policy.fingerprint()}|{window_id}".encode(), hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint64))


def clip_features(values: np.ndarray) -> np.ndarray:
    bounds = np.array(list(clip_bounds().values()))
    return np.clip(values, bounds[:, 0], bounds[:, 1])


def privatize(features: np.ndarray, labels: np.ndarray, window_ids: list[str], policy: SharingPolicy,
              key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(noised features, randomized labels) of the given windows. Post-processing (clip again into
    the bounds, min <= max per series) costs no privacy."""
    scales = noise_scales(policy)
    keep = rr_keep_probability(policy.epsilon_labels)
    x = clip_features(np.asarray(features, dtype=np.float64))
    out_x, out_y = np.empty_like(x), np.asarray(labels, dtype=object).copy()
    for i, wid in enumerate(window_ids):
        rng = window_rng(key, policy, wid)
        noise = rng.laplace(0.0, scales) if policy.noise == "laplace" else rng.normal(0.0, scales)
        out_x[i] = x[i] + noise
        if rng.random() >= keep:
            others = [a for a in CLASSES if a != out_y[i]]
            out_y[i] = others[int(rng.integers(len(others)))]
    out_x = clip_features(out_x)
    index = {name: j for j, name in enumerate(FEATURE_NAMES)}
    for s in SERIES:
        lo, hi = out_x[:, index[f"{s}_min"]].copy(), out_x[:, index[f"{s}_max"]].copy()
        out_x[:, index[f"{s}_min"]], out_x[:, index[f"{s}_max"]] = np.minimum(lo, hi), np.maximum(lo, hi)
    return out_x, out_y.astype(str)


def window_epsilon(policy: SharingPolicy) -> list[dict]:
    """What one shared window releases, as `tandem.privacy.dp_accountant` events: the feature vector
    (Laplace: a pure epsilon-DP release; Gaussian: sigma in units of its L2 sensitivity) and the
    label (k-ary randomized response)."""
    if policy.noise == "laplace":
        features = {"mechanism": "pure", "epsilon": policy.epsilon_features}
    else:
        features = {"mechanism": "gaussian", "sigma": 1 / math.sqrt(2 * _zcdp_rho(policy.epsilon_features, policy.delta))}
    labels = {"mechanism": "randomized_response", "epsilon": policy.epsilon_labels, "classes": len(CLASSES)}
    return [features, labels]


# --------------------------------------------------------------------------------------------
# The device transform


def apply_device_policy(table: pa.Table, policy: SharingPolicy, key: bytes) -> pa.Table:
    """A batch table (plain features, plain metadata) in the policy's modified form, with the
    policy's name in the ``policy`` column and its public JSON in the schema metadata. Sealing
    (encrypted) happens on the serialized bytes: `tandem.privacy.sealing.seal`."""
    columns = {name: table.column(name) for name in table.column_names}
    if policy.has("anonymized"):
        for c in DEVICE_COLUMNS:
            values = columns[c].to_pylist()
            columns[c] = pa.array([generalize(c, v, policy.device_levels[c]) for v in values], pa.string())
    if policy.has("dp") and table.num_rows:
        x = np.column_stack([np.asarray(columns[n].to_numpy(zero_copy_only=False), dtype=np.float64) for n in FEATURE_NAMES])
        y = np.asarray(columns[LABEL_COLUMN].to_pylist(), dtype=object)
        x, y = privatize(x, y, table.column("window_id").to_pylist(), policy, key)
        for j, n in enumerate(FEATURE_NAMES):
            columns[n] = pa.array(x[:, j], pa.float64())
        columns[LABEL_COLUMN] = pa.array(y.tolist(), pa.string())
    columns[POLICY_COLUMN] = pa.array([policy.name] * table.num_rows, pa.string())
    out = pa.Table.from_arrays([columns[n] for n in table.column_names], schema=table.schema)
    return out.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: policy.public_json().encode()})


def local_view(frame: pd.DataFrame, policy: SharingPolicy) -> pd.DataFrame:
    """The deterministic part of the transform, for a device's own plain data before Core ML sees
    it (the same code as the shared form, without the noise that only protects what leaves the
    device): quasi-identifiers generalized, features clipped to the DP bounds."""
    out = frame.copy()
    if policy.has("anonymized"):
        out = generalize_frame(out, policy.device_levels)
    if policy.has("dp"):
        out[list(FEATURE_NAMES)] = clip_features(out[list(FEATURE_NAMES)].to_numpy(np.float64))
    return out
