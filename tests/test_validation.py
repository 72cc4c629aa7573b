"""Shared-batch validation: the GX suite (real validation, no mocks) and the k-anonymity helper."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tandem import task as tasks
from tandem.contract import features, schema
from tandem.contract.schema import TASK_METADATA
from tandem.data.validation import suites as validation
from tandem.data.validation import validate_batch
from tandem.privacy.anonymity import k_anonymity
from tandem.privacy.pseudonyms import pseudonymize

TASK = tasks.resolve("har")  # the task under test, passed down as the server passes it
FZ, BATCH = features.of(TASK), schema.of(TASK)

EMAIL = "jane.doe@example.com"
PHONE = "+49 151 2345 6789"


def valid_table(n: int = 64, seed: int = 0, users: int = 3) -> pa.Table:
    """A plausible batch: features of random sensor windows, HMAC pseudonyms, known labels."""
    rng = np.random.default_rng(seed)
    acc = rng.normal(0, 0.3, (n, FZ.window, 3)) + np.array([0.0, 0.0, 1.0])
    gyro = rng.normal(0, 0.5, (n, FZ.window, 3))
    feats = FZ.featurize(np.concatenate([acc, gyro], axis=2))
    pseudonyms = [pseudonymize(f"user-{seed}-{i % users}", b"test-key") for i in range(n)]
    start = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    columns = {
        "pseudonym": pseudonyms,
        "key_id": ["k1"] * n,
        "window_id": [hashlib.sha256(f"{seed}|{i}".encode()).hexdigest()[:32] for i in range(n)],
        "captured_at": [start + timedelta(seconds=1.28 * i) for i in range(n)],
        **{name: feats[:, j] for j, name in enumerate(FZ.feature_names)},
        "label": [FZ.classes[i] for i in rng.integers(0, len(FZ.classes), n)],
        "device_model": ["iPhone15,2"] * n,
        "os_version": ["18.1"] * n,
        "app_version": ["1.4.0"] * n,
        "locale": ["de_DE"] * n,
        "policy": ["pseudonymized/v1"] * n,
    }
    return pa.Table.from_pydict(columns, schema=BATCH.schema)


def to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def replaced(table: pa.Table, name: str, values, type_=None) -> pa.Table:
    i = table.schema.get_field_index(name)
    type_ = type_ or table.schema.field(name).type
    return table.set_column(i, pa.field(name, type_), pa.array(values, type_))


def assert_failed(verdict, *must_contain: str):
    assert not verdict.ok, verdict.reason
    assert verdict.frame is None
    assert "\n" not in verdict.reason
    for text in must_contain:
        assert text in verdict.reason, verdict.reason
    stored = json.dumps(verdict.result)  # JSON-able, and clean of raw identifiers
    for raw in (EMAIL, PHONE):
        assert raw not in verdict.reason and raw not in stored
    return verdict


@pytest.fixture(scope="module")
def good() -> pa.Table:
    return valid_table()


def test_valid_batch_passes(good):
    data = to_bytes(good)
    verdict = validate_batch(data, "b-good", TASK)
    assert verdict.ok, verdict.reason
    assert verdict.rows == 64 and len(verdict.frame) == 64
    assert list(verdict.frame.columns) == list(BATCH.columns)
    assert verdict.result["success"] is True
    assert verdict.result["statistics"]["evaluated_expectations"] == len(validation.load_suite(validation.suite_path(TASK)).expectations)
    json.dumps(verdict.result)
    assert validate_batch(data, "b-good", TASK).ok  # the cached runtime judges the same bytes the same way


def test_committed_suite_matches_build_suite():
    assert validation.suite_path(TASK).read_text() == validation.suite_json(validation.build_suite(TASK)), "run: tandem expectations"
    suite = json.loads(validation.suite_path(TASK).read_text())
    ranges = {e["kwargs"]["column"]: (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
              for e in suite["expectations"]
              if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] in FZ.feature_names}
    assert set(ranges) == set(FZ.feature_names)  # explicit numbers for every feature
    # derived step by step from the sensor ranges: gravity = low-pass of acc (x1.5 headroom), body = acc - gravity
    assert ranges["gravity_x_mean"] == (-24.0, 24.0) and ranges["gyro_z_max"] == (-35.0, 35.0)
    assert ranges["body_x_std"] == (0.0, 40.0) and ranges["gravity_angle_x"] == (0.0, pytest.approx(3.141592653589793))


def test_hex_digests_with_digit_runs_are_not_phone_numbers(good):
    # about a quarter of all pseudonyms hold 9+ digits in a row, which the phone pattern would match
    user = next(u for u in (f"u{i}" for i in range(1000)) if any(
        len(run) >= 9 for run in "".join(c if c.isdigit() else " " for c in pseudonymize(u, b"k")).split()))
    table = replaced(good, "pseudonym", [pseudonymize(user, b"k")] * good.num_rows)
    assert validate_batch(to_bytes(table), "b-digits", TASK).ok


def test_truncated_and_garbage_parquet(good):
    data = to_bytes(good)
    for broken in (data[: len(data) // 2], b"", b"not parquet at all", data[:-10]):
        v = assert_failed(validate_batch(broken, "b-trunc", TASK), "unreadable parquet")
        assert v.rows == 0 and v.result["error"] == "unreadable parquet"


def test_feature_as_string(good):
    table = replaced(good, "gravity_x_mean", [str(v) for v in good.column("gravity_x_mean").to_pylist()], pa.string())
    v = assert_failed(validate_batch(to_bytes(table), "b-type", TASK), "gravity_x_mean: type is str, expected float64")
    assert "could not run" not in v.reason  # consequences of the type failure are not listed


def test_naive_timestamp(good):
    naive = good.column("captured_at").cast(pa.timestamp("ms"))
    table = good.set_column(3, pa.field("captured_at", pa.timestamp("ms")), naive)
    assert_failed(validate_batch(to_bytes(table), "b-naive", TASK), "captured_at: type is datetime64, expected UTC timestamp")


def test_raw_email_as_pseudonym(good):
    table = replaced(good, "pseudonym", [EMAIL] * 10 + good.column("pseudonym").to_pylist()[10:])
    v = assert_failed(validate_batch(to_bytes(table), "b-email", TASK),
                      "pseudonym: 10 of 64 values are not HMAC pseudonyms", "an e-mail address",
                      "pseudonym: 10 of 64 values look like e-mail addresses")
    assert "redacted: an e-mail address" in json.dumps(v.result)


def test_raw_user_id_as_pseudonym_is_not_echoed(good):
    table = replaced(good, "pseudonym", ["user-0042"] * good.num_rows)
    v = assert_failed(validate_batch(to_bytes(table), "b-rawid", TASK), "a 9-character non-hex string")
    assert "user-0042" not in v.reason and "user-0042" not in json.dumps(v.result)


def test_phone_number_in_metadata(good):
    table = replaced(good, "device_model", [PHONE] * good.num_rows)
    assert_failed(validate_batch(to_bytes(table), "b-phone", TASK), "device_model: 64 of 64 values look like phone numbers")


def test_email_in_label_is_redacted_too(good):
    table = replaced(good, "label", [EMAIL] + good.column("label").to_pylist()[1:])
    assert_failed(validate_batch(to_bytes(table), "b-label-email", TASK),
                  "label: 1 of 64 values outside the task's 6 labels (e.g. an e-mail address)")


def test_labels_outside_the_set(good):
    table = replaced(good, "label", ["flying", "swimming"] * 32)
    assert_failed(validate_batch(to_bytes(table), "b-label", TASK),
                  "label: 64 of 64 values outside the task's 6 labels (e.g. 'flying', 'swimming')")


def test_missing_and_extra_column(good):
    v = assert_failed(validate_batch(to_bytes(good.drop_columns(["locale"])), "b-missing", TASK), "missing column 'locale'")
    assert "could not run" not in v.reason
    extra = good.append_column("email", pa.array([EMAIL] * good.num_rows))
    assert_failed(validate_batch(to_bytes(extra), "b-extra", TASK), "unexpected column 'email'")


def test_column_order(good):
    names = list(good.column_names)
    names[0], names[1] = names[1], names[0]
    assert_failed(validate_batch(to_bytes(good.select(names)), "b-order", TASK), "columns are not in the schema's order")


def test_duplicated_window_id(good):
    ids = good.column("window_id").to_pylist()
    ids[5] = ids[4]
    assert_failed(validate_batch(to_bytes(replaced(good, "window_id", ids)), "b-dup", TASK),
                  "window_id: 2 of 64 values are duplicated within the batch", repr(ids[4]))


def test_bad_window_id(good):
    ids = good.column("window_id").to_pylist()
    ids[0] = ids[0].upper()
    assert_failed(validate_batch(to_bytes(replaced(good, "window_id", ids)), "b-wid", TASK),
                  "window_id: 1 of 64 values are not 32 lowercase hex")


def test_null_values(good):
    table = good.cast(pa.schema([f.with_nullable(True) for f in BATCH.schema]))
    table = replaced(table, "gyro_y_std", [None] * 3 + table.column("gyro_y_std").to_pylist()[3:])
    table = replaced(table, "locale", [None] + table.column("locale").to_pylist()[1:])
    assert_failed(validate_batch(to_bytes(table), "b-null", TASK),
                  "gyro_y_std: 3 of 64 values are null", "locale: 1 of 64 values are null")


def test_nan_feature_counts_as_null(good):
    values = good.column("body_y_min").to_pylist()
    values[7] = float("nan")
    assert_failed(validate_batch(to_bytes(replaced(good, "body_y_min", values)), "b-nan", TASK), "body_y_min: 1 of 64 values are null")


def test_out_of_range_features(good):
    acc = good.column("gravity_z_max").to_pylist()
    acc[0], acc[1] = 99.0, float("inf")
    corr = good.column("corr_body_x_body_y").to_pylist()
    corr[2] = 1.5
    std = good.column("gyro_x_std").to_pylist()
    std[3] = -0.1
    table = replaced(replaced(replaced(good, "gravity_z_max", acc), "corr_body_x_body_y", corr), "gyro_x_std", std)
    assert_failed(validate_batch(to_bytes(table), "b-range", TASK),
                  "gravity_z_max: 2 of 64 values outside [-24, 24] (e.g. 99.0, inf)",
                  "corr_body_x_body_y: 1 of 64 values outside", "gyro_x_std: 1 of 64 values outside [0, 35]")


def test_min_above_max(good):
    table = replaced(good, "body_x_min", (np.asarray(good.column("body_x_max")) + 0.5).tolist())
    assert_failed(validate_batch(to_bytes(table), "b-minmax", TASK), "body_x_max/body_x_min: 64 of 64 rows have body_x_max < body_x_min")


def test_captured_at_bounds(good):
    times = good.column("captured_at").to_pylist()
    times[0] = datetime(2005, 1, 1, tzinfo=timezone.utc)
    times[1] = datetime.now(timezone.utc) + timedelta(days=30)
    assert_failed(validate_batch(to_bytes(replaced(good, "captured_at", times)), "b-time", TASK),
                  "captured_at: 2 of 64 values are before 2010-01-01")


def test_empty_batch(good):
    assert_failed(validate_batch(to_bytes(good.slice(0, 0)), "b-empty", TASK), "rows: 0 rows, at least 1 expected")


def test_unworkable_schema_is_a_verdict_not_a_crash():
    table = pa.table({"a": pa.array([[1, 2], [3]]), "b": pa.array([{"x": 1}, {"x": 2}])})
    v = validate_batch(to_bytes(table), "b-weird", TASK)
    assert not v.ok and "missing column" in v.reason


def test_threads_do_not_mix_batches(good):
    from concurrent.futures import ThreadPoolExecutor

    bad = to_bytes(replaced(good, "label", ["flying"] * good.num_rows))
    jobs = [(to_bytes(good), True), (bad, False), (to_bytes(valid_table(n=8, seed=3)), True), (bad, False)]
    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda job: validate_batch(job[0], "b-thread", TASK), jobs))
    assert [v.ok for v in verdicts] == [ok for _, ok in jobs]
    assert [v.rows for v in verdicts] == [64, 64, 8, 64]
    assert all("label: 64 of 64" in v.reason for v in verdicts if not v.ok)


def test_k_anonymity():
    frame = pd.DataFrame({
        "device_model": ["A"] * 5 + ["B"] * 2 + ["C"],
        "os_version": ["17"] * 5 + ["18"] * 2 + ["18"],
        "app_version": ["1.4.0"] * 8,
        "locale": ["de_DE"] * 5 + ["en_US"] * 2 + [None],
        "other": range(8),
    })
    smallest, violating = k_anonymity(frame, BATCH.device_columns, k=3)
    assert smallest == 1
    assert [g["size"] for g in violating] == [1, 2]
    assert violating[1]["values"] == {"device_model": "B", "os_version": "18", "app_version": "1.4.0", "locale": "en_US"}
    assert k_anonymity(frame, ["app_version"], k=8) == (8, [])
    assert k_anonymity(frame.iloc[:0], BATCH.device_columns, k=2) == (0, [])
    with pytest.raises(KeyError):
        k_anonymity(frame, ["imei"], k=2)
    with pytest.raises(ValueError):
        k_anonymity(frame, BATCH.device_columns, k=0)


def test_k_anonymity_over_accepted_batches():
    frames = [validate_batch(to_bytes(valid_table(n=16, seed=s)), f"b{s}", TASK).frame for s in range(2)]
    smallest, violating = k_anonymity(pd.concat(frames), BATCH.device_columns, k=5)
    assert (smallest, violating) == (32, [])


def test_expectations_dir_override(tmp_path, monkeypatch, good):
    suite = json.loads(validation.suite_path(TASK).read_text())
    suite["expectations"] = [e for e in suite["expectations"] if e["type"] != "expect_column_values_to_be_in_set"]
    (tmp_path / validation.SUITE_FILE).write_text(json.dumps(suite))
    assert validate_batch(to_bytes(replaced(good, "label", ["flying"] * good.num_rows)), "b-override", TASK,
                          suites_dir=tmp_path).ok
    assert not validate_batch(to_bytes(replaced(good, "label", ["flying"] * good.num_rows)), "b-default", TASK).ok


def test_a_batch_made_under_another_task_or_version_is_quarantined(good):
    assert good.schema.metadata[TASK_METADATA] == TASK.tag.encode()  # devices record the task they served
    other = good.replace_schema_metadata({**good.schema.metadata, TASK_METADATA: b"har/v0+000000000000"})
    assert_failed(validate_batch(to_bytes(other), "b-old-task", TASK), f"task: made under har/v0+000000000000, this server serves {TASK.tag}")
    meta = {k: v for k, v in good.schema.metadata.items() if k != TASK_METADATA}
    assert_failed(validate_batch(to_bytes(good.replace_schema_metadata(meta)), "b-no-task", TASK), "task: the batch declares no task")


def _team_task(folder, template: str, name: str):
    """A task as `tandem init` makes one (the template's task.yaml, named), read from its folder."""
    folder.mkdir(parents=True)
    text = (tasks.BUILTIN.parent / "task" / "templates" / template / "task.yaml").read_text()
    (folder / "task.yaml").write_text(text.replace("__NAME__", name))
    return tasks.read(folder)


def _tabular_table(task, labels, n: int = 12) -> pa.Table:
    """A batch of a tabular task whose inputs repeat (days 0-9, as a real team's do)."""
    fz, batch = features.of(task), schema.of(task)
    rows = np.stack([np.full(n, float(i % 10)) if i == 0 else (np.arange(n) % 3).astype(float)
                     for i in range(len(fz.channels))], axis=1)
    feats = fz.featurize(rows[:, None, :])
    start = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    columns = {"pseudonym": [pseudonymize("team-user", b"k")] * n, "key_id": ["k1"] * n,
               "window_id": [hashlib.sha256(f"t|{i}".encode()).hexdigest()[:32] for i in range(n)],
               "captured_at": [start + timedelta(days=i) for i in range(n)],
               **{name: feats[:, j] for j, name in enumerate(fz.feature_names)},
               "label": [labels[i % len(labels)] for i in range(n)],
               **{c: [v] * n for c, v in zip(batch.device_columns, ("iPhone15,2", "18.1", "1.4.0", "de_DE"))},
               "policy": ["pseudonymized/v1"] * n}
    return pa.Table.from_pydict(columns, schema=batch.schema)


def test_one_process_judges_two_tasks_one_after_the_other(tmp_path, good):
    """Issue 17: the task travels as a parameter. A team's 3-class tabular task (made here, not a built-in)
    and har are judged in one process: each batch by its own task's suite and class count, a batch of one
    refused by the other, and har judged as before afterwards (nothing cached per process for one task)."""
    team = _team_task(tmp_path / "choice", "tabular-classification", "choice")
    classes = features.of(team).classes
    assert len(classes) == 3 and schema.of(team).columns != BATCH.columns
    mine = _tabular_table(team, classes)
    assert validate_batch(to_bytes(mine), "t-ok", team).ok
    assert (tmp_path / "choice" / "expectations" / validation.SUITE_FILE).exists()  # the team's own suites, generated
    assert_failed(validate_batch(to_bytes(_tabular_table(team, ["flying"])), "t-label", team),
                  "label: 12 of 12 values outside the task's 3 labels")
    assert_failed(validate_batch(to_bytes(good), "t-har", team), f"this server serves {team.tag}")
    assert_failed(validate_batch(to_bytes(mine), "h-team", TASK), f"this server serves {TASK.tag}")
    assert validate_batch(to_bytes(good), "h-ok", TASK).ok


def test_regression_labels_are_judged_against_the_target_range(tmp_path):
    team = _team_task(tmp_path / "effort", "tabular-regression", "effort")
    assert validate_batch(to_bytes(_tabular_table(team, [0.0, 3.5, 10.0])), "r-ok", team).ok
    assert_failed(validate_batch(to_bytes(_tabular_table(team, [11.0])), "r-range", team), "label: 12 of 12 values outside [0, 10]")
