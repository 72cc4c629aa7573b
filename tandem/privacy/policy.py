"""The sharing policy: which modified forms a device shares its windows in, versioned and recorded
in every batch (the ``policy`` column holds its name, the parquet metadata ``tandem.privacy.policy`` its
public JSON) and in every release (`SharingPolicy.public_dict`).

The forms (``pseudonymized`` is always on) are a registry, one module each, in
`tandem.privacy.forms`: pseudonymized (keyed HMAC of the user id), anonymized (quasi-identifiers
generalized on the device, k enforced by the server), dp (local differential privacy per window,
charged to the device's privacy ledger), encrypted (sealed on the device). Each says its device
transform and what the server needs to know of it; this module holds the policy's fields and asks
the forms it names.

Everything here is deterministic given the device's secret key: re-sharing the same windows gives
the same rows (noise seeded per window by a keyed digest), so it writes nothing new and costs no
budget. `local_view` is the deterministic part a device applies to its own plain data before Core
ML sees it. Nothing here reads which task is served: the transforms take the task they share for.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.contract.schema import POLICY_COLUMN
from tandem.privacy.forms import FORMS as REGISTRY
from tandem.privacy.forms.anonymized import (  # noqa: F401  (re-exported: the anonymized form's hierarchy)
    DEFAULT_COLUMNS,
    GENERALIZED_REGEX,
    HIERARCHY_DOC,
    HIERARCHY_LEVELS,
    SUPPRESSED,
    generalize,
    generalize_frame,
    top_level,
)
from tandem.privacy.forms.dp import (  # noqa: F401  (re-exported: the dp form's mechanisms)
    clip_bounds,
    clip_features,
    noise_scales,
    privatize,
    rr_keep_probability,
    window_epsilon,
    window_rng,
)
from tandem.task import Task

FORMS: tuple[str, ...] = tuple(REGISTRY)  # canonical order in names
Form = Literal[FORMS]  # a form's name
METADATA_KEY = b"tandem.policy"  # parquet schema metadata: the batch's policy, public JSON
POLICY_NAME_REGEX = r"^[a-z][a-z0-9_-]*(?:\+[a-z][a-z0-9_-]*)*/v[0-9]+$"
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        default_factory=lambda: {c: 1 for c in DEFAULT_COLUMNS},
        description="generalization level the device applies before sharing (>= 1 for each quasi-identifier; "
                    "one the policy does not name: 1)")
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
        unknown = sorted(c for c in levels if not _COLUMN.fullmatch(str(c)))
        if unknown:
            raise ValueError(f"not quasi-identifier column names: {unknown}")
        full = {c: int(levels.get(c, 1)) for c in DEFAULT_COLUMNS} | {c: int(v) for c, v in levels.items()}
        for c, level in full.items():
            if not 1 <= level <= top_level(c):
                raise ValueError(f"{c}: device level must be within [1, {top_level(c)}], got {level}")
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

    @property
    def sealed(self) -> bool:
        """A form of the policy seals the batch on the device (the server opens it in memory only)."""
        return any(REGISTRY[form].sealed for form in self.forms)

    @property
    def charged(self) -> bool:
        """A form of the policy charges every shared window to the device's privacy ledger."""
        return any(REGISTRY[form].charged for form in self.forms)

    def check(self, task: Task) -> None:
        """Raise ValueError when a form of the policy cannot serve `task` (dp: a numeric target)."""
        for form in self.forms:
            REGISTRY[form].check(self, task)

    def public_dict(self, task: Task) -> dict:
        """The full policy, no secrets: for batch metadata and the release manifest (each form adds what
        it states of itself for `task`, e.g. the dp form's clip and mechanisms)."""
        d = {"name": self.name, **self.model_dump(mode="json"), "fingerprint": self.fingerprint()}
        for form in self.forms:
            d.update(REGISTRY[form].public(self, task))
        return d

    def window_events(self, classes: int) -> list[dict]:
        """The privacy events of one shared window for a task of `classes` classes (none without the dp form)."""
        return [e for form in self.forms for e in REGISTRY[form].window_events(self, classes)]

    def public_json(self, task: Task) -> str:
        return json.dumps(self.public_dict(task), sort_keys=True)


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
# The device transform


def apply_device_policy(table: pa.Table, policy: SharingPolicy, key: bytes, task: Task) -> pa.Table:
    """A batch table (plain features, plain metadata) of `task` in the policy's modified form, with the
    policy's name in the ``policy`` column and its public JSON in the schema metadata. Each form
    rewrites the columns it changes; sealing (encrypted) happens on the serialized bytes:
    `tandem.privacy.sealing.seal`."""
    columns = {name: table.column(name) for name in table.column_names}
    for form in policy.forms:
        REGISTRY[form].device(columns, policy, key, task)
    columns[POLICY_COLUMN] = pa.array([policy.name] * table.num_rows, pa.string())
    out = pa.Table.from_arrays([columns[n] for n in table.column_names], schema=table.schema)
    return out.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: policy.public_json(task).encode()})


def local_view(frame: pd.DataFrame, policy: SharingPolicy, task: Task) -> pd.DataFrame:
    """The deterministic part of the transform, for a device's own plain data before Core ML sees
    it (the same code as the shared form, without the noise that only protects what leaves the
    device): quasi-identifiers generalized, features clipped to the DP bounds."""
    out = frame.copy()
    for form in policy.forms:
        out = REGISTRY[form].local_view(out, policy, task)
    return out
