"""anonymized: the quasi-identifiers (device metadata) generalized along a fixed hierarchy on the
device (`generalize`), and k enforced by the server over everything it keeps
(`tandem.privacy.anonymity.enforce_k`): groups with fewer than k distinct users are generalized
further, or suppressed. A quasi-identifier a task names that has no hierarchy here (a team's own,
e.g. ``region``) has two levels: its plain value, and suppressed."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa

from tandem.contract.schema import POLICY_COLUMN
from tandem.privacy.forms.base import Form
from tandem.task import Task

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
# What a generalized (level >= 1) value looks like; the anonymized suite checks these.
GENERALIZED_REGEX = {
    "device_model": r"^(?:[A-Za-z]+[0-9]*|\*)$",
    "os_version": r"^(?:[0-9]+|\*)$",
    "locale": r"^(?:[a-z]{2,3}|\*)$",
    "app_version": r"^(?:[0-9]+\.[0-9]+|\*)$",
}
DEFAULT_COLUMNS = ("device_model", "os_version", "app_version", "locale")  # a policy's default device levels


def top_level(column: str) -> int:
    """The column's most general level ("*"): 1 for a column without a hierarchy here."""
    return HIERARCHY_LEVELS.get(column, 1)


def generalized_regex(column: str) -> str:
    """What the column's value looks like once generalized on the device."""
    return GENERALIZED_REGEX.get(column, r"^\*$")


def _level_of(column: str, value: str) -> int:
    if value == SUPPRESSED:
        return top_level(column)
    if column not in HIERARCHY_LEVELS:
        return 0
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
    top = top_level(column)
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


def device_levels(policy, task: Task) -> dict[str, int]:
    """The level the device applies to each of the task's quasi-identifiers (1 when the policy names none)."""
    return {c: policy.device_levels.get(c, 1) for c in task.quasi_identifiers}


class Anonymized(Form):
    name = "anonymized"
    suite = True
    summary = "quasi-identifiers generalized on the device; k enforced by the server over what it keeps"
    hides_values = True
    enforces_k = True

    def device(self, columns: dict, policy, key: bytes, task: Task) -> None:
        for c, level in device_levels(policy, task).items():
            columns[c] = pa.array([generalize(c, v, level) for v in columns[c].to_pylist()], pa.string())

    def local_view(self, frame: pd.DataFrame, policy, task: Task) -> pd.DataFrame:
        return generalize_frame(frame, device_levels(policy, task))

    def public(self, policy, task: Task) -> dict:
        return {"hierarchy": HIERARCHY_DOC}

    def expectations(self, task: Task) -> list[tuple[str, dict]]:
        ex = [("ExpectColumnValuesToMatchRegex", {"column": c, "regex": generalized_regex(c)}) for c in task.quasi_identifiers]
        return ex + [("ExpectColumnValuesToMatchRegex",
                      {"column": POLICY_COLUMN, "regex": r"^[a-z+_-]*\banonymized\b[a-z+_-]*/v[0-9]+$"})]

    def suite_meta(self) -> dict:
        return {"checks": "quasi-identifiers generalized on the device (k itself is enforced by the server's snapshot)"}


FORM = Anonymized()
