"""Bad input on the phone (issue 20): NaN, infinities, overflowing values, text and empty data never
reach an update; an update never leaves a non-finite weight; the CLI says so in one line and exits
non-zero where nothing useful was done."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from device_builders import FEATURE_NAMES, LABELS, D, classifier_spec, regressor_spec
from typer.testing import CliRunner

from tandem.cli.device import app
from tandem.device.runtime import BadInput, DeviceModel
from tandem.device.update import UpdateDiverged, updatable_weights, update
from tandem.device.update_policy import UpdatePolicy, personalize


@pytest.fixture(scope="module")
def base():
    return DeviceModel.load(classifier_spec(lr=1.0).SerializeToString())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, D)), np.asarray(LABELS)[np.arange(40) % 6]


def write(path, X, y, as_text=False):
    cols = {"pseudonym": ["a" * 64] * len(X)}
    cols.update({n: (X[:, i].astype(str) if as_text else X[:, i]) for i, n in enumerate(FEATURE_NAMES)})
    cols["label"] = pa.array(list(y), pa.string())
    pq.write_table(pa.table(cols), path)
    return path


def all_finite(model) -> bool:
    return all(np.isfinite(v["weights"]).all() and np.isfinite(v["bias"]).all() for v in updatable_weights(model).values())


@pytest.mark.parametrize("value, rows, why", [(np.nan, [1, 3, 5, 7, 9], "5 with NaN or infinite values, 0 that overflow"),
                                               (np.inf, [2, 4], "2 with NaN or infinite values, 0 that overflow"),
                                               (1e308, [6], "0 with NaN or infinite values, 1 that overflow")])
def test_personalize_skips_unusable_rows_with_a_count(tmp_path, base, data, value, rows, why):
    X, y = data
    X = X.copy()
    X[rows, 0 if value != 1e308 else slice(None)] = value
    mpath = base.save(tmp_path / "base.mlmodel")
    r = CliRunner().invoke(app, ["personalize", str(mpath), str(write(tmp_path / "d.parquet", X, y)),
                                 "--out", str(tmp_path / "me.mlmodel"), "--learning-rate", "0.05"])
    assert r.exit_code == 0, r.output
    assert f"skipped {len(rows)} of 40 rows" in r.output and why in r.output
    assert "nan" not in r.output.split("loss before:")[1].lower()
    assert all_finite(DeviceModel.load(tmp_path / "me.mlmodel"))


def test_features_stored_as_text_are_refused_not_coerced(tmp_path, base, data):
    X, y = data
    mpath = base.save(tmp_path / "base.mlmodel")
    r = CliRunner().invoke(app, ["personalize", str(mpath), str(write(tmp_path / "t.parquet", X, y, as_text=True)),
                                 "--out", str(tmp_path / "me.mlmodel")])
    assert r.exit_code == 2 and "not stored as numbers" in r.output
    assert not (tmp_path / "me.mlmodel").exists()


def test_zero_rows_is_an_error_for_the_cli_and_a_no_op_for_the_library(tmp_path, base, data):
    X, y = data
    mpath = base.save(tmp_path / "base.mlmodel")
    empty = write(tmp_path / "e.parquet", X[:0], y[:0])
    r = CliRunner().invoke(app, ["personalize", str(mpath), str(empty), "--out", str(tmp_path / "me.mlmodel")])
    assert r.exit_code == 1 and "no usable labelled rows (it is empty)" in r.output
    assert not (tmp_path / "me.mlmodel").exists()
    r = CliRunner().invoke(app, ["predict", str(mpath), str(empty)])
    assert r.exit_code == 1 and "nothing to predict" in r.output
    result = update(base, X[:0], y[:0])
    assert result.history == [] and result.model.sha256 == base.sha256
    kept = personalize(base, X[:0], y[:0])
    assert kept.epochs == 0 and kept.model.sha256 == base.sha256 and "no labelled rows" in kept.note


def test_predict_with_nan_rows_scores_only_the_usable_rows(tmp_path, base, data):
    X, y = data
    X = X.copy()
    X[[0, 10, 20], 4] = np.nan
    r = CliRunner().invoke(app, ["predict", str(base.save(tmp_path / "b.mlmodel")), str(write(tmp_path / "d.parquet", X, y))])
    assert r.exit_code == 0, r.output
    assert "skipped 3 of 40 rows" in r.output and "on 37 rows (3 skipped)" in r.output
    with pytest.raises(BadInput, match="1 of 2 feature vectors hold NaN"):
        base.predict_proba(X[9:11])
    with pytest.raises(BadInput, match="drive the model to non-finite outputs"):
        base.predict_proba(np.full((1, D), 1e308))


def test_the_library_refuses_non_finite_inputs_and_targets(base, data):
    X, y = data
    bad = X.copy()
    bad[3, 3] = np.inf
    with pytest.raises(BadInput, match=r"1 of 40 feature vectors hold NaN or infinite values \(rows 3\)"):
        update(base, bad, y, epochs=1)
    reg = DeviceModel.load(regressor_spec().SerializeToString())
    Xr = np.random.default_rng(1).normal(size=(10, 5))
    with pytest.raises(BadInput, match="1 of 10 targets"):
        update(reg, Xr, np.r_[np.ones(9), np.nan], epochs=1)
    p = personalize(reg, Xr, np.r_[np.ones(9), np.nan], UpdatePolicy(max_epochs=5, min_per_class=2, fallback_epochs=5))
    assert p.skipped == [9] and all_finite(p.model)


def test_a_diverging_update_is_stopped_at_the_step_and_rolled_back(tmp_path, base, data):
    # finite features the base handles (no overflow yet), but lr=1.0 sends the weights past float32
    X, y = data
    X = X * 1e150
    assert not base.usable_rows(X)[1].any()
    with pytest.raises(UpdateDiverged, match="diverged in epoch"):
        update(base, X, y, epochs=5, learning_rate=1.0)
    p = personalize(base, X, y, UpdatePolicy(learning_rate=1.0, max_epochs=5, patience=2, min_per_class=2))
    assert p.epochs == 0 and p.model.sha256 == base.sha256 and "diverged" in p.note
    r = CliRunner().invoke(app, ["personalize", str(base.save(tmp_path / "b.mlmodel")), str(write(tmp_path / "d.parquet", X, y)),
                                 "--out", str(tmp_path / "me.mlmodel"), "--learning-rate", "1.0", "--epochs", "5"])
    assert r.exit_code == 1 and "diverged" in r.output and "not written" in r.output
    assert not (tmp_path / "me.mlmodel").exists()


def test_check_on_a_model_with_no_updatable_layer_fails(tmp_path):
    frozen = tmp_path / "frozen.mlmodel"
    frozen.write_bytes(classifier_spec(updatable=()).SerializeToString())
    r = CliRunner().invoke(app, ["check", str(frozen)])
    assert r.exit_code == 1 and "FAIL" in r.output
