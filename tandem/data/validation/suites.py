"""The shared-batch expectation suites: generated from the batch schema and the sharing forms, kept as
JSON under ``expectations/`` (in git: the source of truth a reviewer reads), reloaded by the runner.
``tandem expectations`` writes them; ``tandem expectations --check`` says whether they are current."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa

from tandem.contract import features, schema
from tandem.contract.schema import LABEL_COLUMN, POLICY_COLUMN
from tandem.data.validation.shapes import QUASI_IDENTIFIER_REGEX
from tandem.privacy import policy
from tandem.privacy.forms import FORMS, encrypted
from tandem.privacy.pseudonyms import EMAIL_REGEX, PHONE_REGEX, PSEUDONYM_REGEX
from tandem.task import BUILTIN, Task

SUITE_NAME = "shared_batch"
SUITE_FILE = f"{SUITE_NAME}.json"
# One more suite per modified form with invariants of its own, run when the batch's policy declares
# that form (tandem.privacy.policy): expectations/shared_batch.<form>.json
FORM_SUITES = tuple(name for name, form in FORMS.items() if form.suite)  # ("anonymized", "dp", "encrypted")

WINDOW_ID_REGEX = r"^[0-9a-f]{32}$"
POLICY_REGEX = r"^[a-z][a-z0-9_-]*(?:\+[a-z][a-z0-9_-]*)*/v[0-9]+$"  # e.g. "pseudonymized/v1", "pseudonymized+dp/v1"
# Only the forms Tandem knows: a made-up policy name would drop out of the snapshot's policy list.
KNOWN_POLICY_REGEX = "^(?:{f})(?:\\+(?:{f}))*/v[0-9]+$".format(f="|".join(policy.FORMS))
MAX_TEXT_LENGTH = 64  # key_id, device metadata, policy: short labels, never free text

CAPTURED_AT_MIN = "2010-01-01T00:00:00+00:00"
CAPTURED_AT_MAX_PARAMETER = "captured_at_max"  # supplied at run time: now + CLOCK_SKEW
CLOCK_SKEW = timedelta(days=1)  # device clocks run ahead; further in the future is not plausible

GENERIC_QI_REGEX = r"^[A-Za-z0-9_.,*-]{1,32}$"  # a quasi-identifier the allow-list does not know: short, no spaces or @
HEX_COLUMNS = ("pseudonym", "window_id")  # exact hex formats: checked by their own regex


def string_columns(task: Task) -> tuple[str, ...]:
    return tuple(f.name for f in schema.of(task).schema if str(f.type) in ("string", "large_string"))


def text_columns(task: Task) -> tuple[str, ...]:
    """Short labels, never free text: the key id, the device metadata, the policy."""
    return ("key_id", *schema.of(task).device_columns, POLICY_COLUMN)


def feature_ranges(task: Task) -> dict[str, tuple[float, float]]:
    """Plausible [min, max] of every feature column, in feature_names order: each feature operation
    derives its outputs' ranges from its inputs' (tandem.contract.feature_ops), starting from the
    task's input ranges (each channel's max |value|)."""
    featurization = features.of(task)
    ranges = featurization.feature_bounds()
    assert list(ranges) == list(featurization.feature_names), "feature_ranges() out of step with feature_names"
    return {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}


def _pandas_type(pa_type) -> str:
    """The `type_` a column of this arrow type has after ``pq.read_table(...).to_pandas()`` (pandas 3)."""
    if pa.types.is_floating(pa_type):
        return "float64"
    if pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type):
        return "str"  # pandas 3 StringDtype: its scalar type is str
    if pa.types.is_timestamp(pa_type) and pa_type.tz:
        return "Timestamp"  # DatetimeTZDtype's scalar type is pd.Timestamp; naive datetimes are not it
    raise ValueError(f"no pandas type mapping for {pa_type}")


# the expectation each kind's label rule names (tandem.task.kinds: `label_rule`)
_LABEL_EXPECTATIONS = {"in_set": gxe.ExpectColumnValuesToBeInSet, "between": gxe.ExpectColumnValuesToBeBetween}


def target_expectation(task: Task):
    """Labels within the task's classes, or the numeric target within its declared range: the kind says."""
    rule, arguments = features.of(task).kind.label_rule()
    return _LABEL_EXPECTATIONS[rule](column=LABEL_COLUMN, **arguments)


def build_suite(task: Task):
    """The task's shared-batch expectation suite (the generator of expectations/<task>/shared_batch.json)."""
    batch = schema.of(task)
    ex: list = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(batch.columns)),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    ex += [gxe.ExpectColumnValuesToBeOfType(column=f.name, type_=_pandas_type(f.type)) for f in batch.schema]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=name) for name in batch.columns]
    # identity
    ex += [
        gxe.ExpectColumnValuesToMatchRegex(column="pseudonym", regex=PSEUDONYM_REGEX),
        gxe.ExpectColumnValuesToMatchRegex(column="window_id", regex=WINDOW_ID_REGEX),
        gxe.ExpectColumnValuesToBeUnique(column="window_id"),
        gxe.ExpectColumnValuesToBeBetween(column="captured_at", min_value=CAPTURED_AT_MIN,
                                          max_value={"$PARAMETER": CAPTURED_AT_MAX_PARAMETER}),
    ]
    # features
    ex += [gxe.ExpectColumnValuesToBeBetween(column=name, min_value=lo, max_value=hi)
           for name, (lo, hi) in feature_ranges(task).items()]
    ex += [gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=f"{s}_max", column_B=f"{s}_min", or_equal=True)
           for s in features.of(task).series]
    # label, policy, short text columns
    ex += [
        gxe.ExpectColumnValuesToMatchRegex(column=POLICY_COLUMN, regex=KNOWN_POLICY_REGEX),
    ]
    ex += [target_expectation(task)]
    ex += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=QUASI_IDENTIFIER_REGEX.get(c, GENERIC_QI_REGEX))
           for c in batch.device_columns]
    ex += [gxe.ExpectColumnValueLengthsToBeBetween(column=name, min_value=1, max_value=MAX_TEXT_LENGTH)
           for name in text_columns(task)]
    # no raw identifiers anywhere. The phone pattern is not run on the exact-hex columns: a hex
    # digest often holds 9+ digits in a row (a quarter of all 64-hex pseudonyms), and their own
    # regex already admits nothing but lowercase hex of a fixed length.
    for name in string_columns(task):
        ex.append(gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=EMAIL_REGEX))
        if name not in HEX_COLUMNS:
            ex.append(gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=PHONE_REGEX))

    # Built without a data context: the constructor takes the expectations (add_expectation needs one).
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=ex,
        meta={
            "great_expectations_version": gx.__version__,
            "generated_by": "tandem expectations (tandem.data.validation.suites.build_suite)",
            "task": task.tag,
            "read_as": "pyarrow.parquet.read_table(...).to_pandas() under pandas 3",
            "runtime_parameters": {CAPTURED_AT_MAX_PARAMETER: f"now (UTC) + {CLOCK_SKEW.total_seconds() / 3600:g} h"},
        },
    )


def form_suite_name(form: str) -> str:
    return f"{SUITE_NAME}.{form}"


def build_form_suite(form: str, task: Task):
    """The invariants of one modified form (generator of expectations/shared_batch.<form>.json).

    anonymized: every quasi-identifier is a generalized value (tandem.privacy.policy's hierarchy), never a
    plain one. dp: every feature within the policy's clipping bounds. encrypted: run on the batch's
    transport facts (one row: how the object was stored), it must have been sealed with AES-GCM."""
    found = FORMS.get(form)
    if found is None or not found.suite:
        raise ValueError(f"no suite for form {form!r}")
    ex = [getattr(gxe, name)(**arguments) for name, arguments in found.expectations(task)]  # the form's own invariants
    meta = found.suite_meta()
    return gx.ExpectationSuite(name=form_suite_name(form), expectations=ex,
                               meta={"great_expectations_version": gx.__version__, "form": form, "task": task.tag,
                                     "generated_by": "tandem expectations (tandem.data.validation.suites.build_form_suite)",
                                     **meta})


TRANSPORT_COLUMNS = encrypted.TRANSPORT_COLUMNS  # what the encrypted form's suite reads


def transport_frame(transport: dict | None):
    """The encrypted suite's input: how the batch was stored, as one row."""
    t = transport or {}
    return pd.DataFrame({"stored_format": [t.get("stored_format", "parquet")], "aead": [t.get("aead", "none")],
                         "envelope_key_id": [t.get("key_id", "none")]})


def suite_json(suite) -> str:
    d = suite.to_json_dict()
    d.pop("id", None)
    for e in d["expectations"]:
        e.pop("id", None)
    return json.dumps(d, indent=2) + "\n"


REPOSITORY_DIR = Path(__file__).resolve().parents[3] / "expectations"  # the repository's expectations/


def default_dir(task: Task) -> Path:
    """A built-in task's suites: expectations/<task>/ in the repository; a team's task folder keeps
    its own in <folder>/expectations/."""
    folder = task.folder
    if folder is None or folder.parent == BUILTIN.resolve():
        return REPOSITORY_DIR / task.name
    return folder / "expectations"


def suite_path(task: Task, form: str | None = None, folder: Path | None = None) -> Path:
    """Where a suite of `task` lives: `folder` (the settings' TANDEM_EXPECTATIONS_DIR) or the task's default."""
    return (folder or default_dir(task)) / (SUITE_FILE if form is None else f"{form_suite_name(form)}.json")


def build(task: Task, form: str | None = None):
    """The task's shared-batch suite (`form` None) or one form's suite."""
    return build_suite(task) if form is None else build_form_suite(form, task)


def write_missing(task: Task, folder: Path | None = None) -> list[Path]:
    """Generate the task's suites that do not exist yet (a new task folder has none)."""
    written = []
    for form in (None, *FORM_SUITES):
        path = suite_path(task, form, folder)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(suite_json(build(task, form)))
            written.append(path)
    return written


def load_suite(path: Path):
    """The suite from its JSON; refuses a file in which GX drops any expectation as invalid."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no GX suite here (write the task's suites with `tandem expectations`)")
    d = json.loads(path.read_text())
    suite = gx.ExpectationSuite(name=d["name"], expectations=d["expectations"],
                                suite_parameters=d.get("suite_parameters") or {}, meta=d.get("meta"),
                                notes=d.get("notes"))
    if len(suite.expectations) != len(d["expectations"]):
        raise ValueError(f"{path}: {len(d['expectations']) - len(suite.expectations)} expectation(s) are invalid")
    return suite
