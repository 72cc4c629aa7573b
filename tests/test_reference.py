"""The reference set: registered, versioned and checksummed in the store; the production flow scores,
gates and cuts golden vectors from it alone (a server with nothing but the store can release)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tandem import pipeline
from tandem import task as tasks
from tandem.cli.errors import main as cli
from tandem.contract import features
from tandem.data import holdout, reference
from tandem.data.store import LocalStore, store_from_settings
from tandem.fleet import users as fleet
from tandem.release import candidate
from tandem.release.layout import list_releases
from tandem.release.params import RunParams
from tandem.settings import Settings
from tests.flow_helpers import FAST, run_flow, share_synthetic

TASK = tasks.resolve("har")


def _recordings(n_users: int = 2, seed: int = 3) -> bytes:
    users = fleet.synthetic_fleet(TASK, n_users, windows_per_class=4, seed=seed)
    return reference.recordings_bytes({u.user_id: {"windows": u.windows, "labels": u.labels, "window_keys": u.window_keys,
                                                  "captured_at": u.captured_at} for u in users})


def _npz(**arrays) -> bytes:
    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


def test_a_registration_is_versioned_checksummed_and_loaded_featurized(tmp_path):
    store = LocalStore(tmp_path / "store")
    first = reference.add(store, "m", _recordings(), TASK)
    assert reference.add(store, "m", _recordings(), TASK)["version"] == first["version"] == 1  # same bytes: nothing new
    second = reference.add(store, "m", _recordings(seed=4), TASK)
    assert second["version"] == 2 and reference.latest_manifest(store, "m") == second
    users = reference.load(store, "m", TASK)
    assert [u.user_id for u in users] == sorted(u.user_id for u in users) and len(users) == 2
    u = users[0]
    assert u.features.shape[0] == u.windows.shape[0] == len(u.labels) and np.all(np.diff(u.captured_at.astype(np.int64)) >= 0)
    store.put(second["key"], _recordings(seed=5))  # changed behind the manifest's back
    with pytest.raises(reference.ReferenceError, match="changed since it was registered"):
        reference.load(store, "m", TASK)


@pytest.mark.parametrize("data,why", [
    (b"not an npz", "not a recordings .npz"),
    (_npz(windows=np.zeros((2, 128, 6))), "lack the array"),
    (_npz(windows=np.zeros((2, 64, 6)), labels=np.array(["walking"] * 2), devices=np.array(["a", "a"]),
          window_keys=np.array(["0", "1"]), captured_at=np.zeros(2, "datetime64[ms]")), "expected \\(2, 128, 6\\)"),
    (_npz(windows=np.zeros((2, 128, 6)), labels=np.array(["flying"] * 2), devices=np.array(["a", "a"]),
          window_keys=np.array(["0", "1"]), captured_at=np.zeros(2, "datetime64[ms]")), "unknown label"),
])
def test_a_malformed_file_is_refused_with_what_is_wrong(tmp_path, data, why):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(reference.ReferenceError, match=why):
        reference.add(store, "m", data, TASK)
    assert not store.list("reference/")  # nothing half-registered


def test_the_cli_registers_a_file_and_says_what_is_wrong_in_one_line(tandem_home, tmp_path, capsys):
    good, bad = tmp_path / "rec.npz", tmp_path / "bad.npz"
    good.write_bytes(_recordings())
    bad.write_bytes(b"junk")
    assert cli(["reference", "add", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not a recordings .npz" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli(["reference", "add", str(good)]) == 0
    assert "registered reference set v1" in capsys.readouterr().out
    assert cli(["reference", "add", str(good)]) == 0
    assert "already registered" in capsys.readouterr().out


def test_a_run_without_a_reference_set_stops_before_any_work(tandem_home, capsys):
    assert cli(["run"]) == 1
    err = capsys.readouterr().err
    assert "no reference set" in err and "tandem reference add" in err


def test_the_flow_releases_from_the_store_alone_with_the_simulator_gone(tandem_home):
    settings = Settings()
    share_synthetic(settings)
    shutil.rmtree(settings.devices_dir)  # everything the simulator kept: gone; only the store is left
    outcome = run_flow()
    assert outcome["status"] == "published", outcome.get("reasons")
    assert not settings.devices_dir.exists()  # and nothing recreated it
    store = store_from_settings(settings)
    manifest = list_releases(store, settings.model_name)[-1]
    ref = reference.latest_manifest(store, settings.model_name)
    assert manifest["reference_set"]["sha256"] == ref["sha256"]
    assert [u.user_id for u in reference.load(store, settings.model_name, TASK)][0] == "test-device-00"  # no raw user id
    assert manifest["metrics"]["evaluated_on"] == "held-out pseudonyms"  # users from the store, never trained on
    assert manifest["metrics"]["n_users"] >= 1 and 0 <= manifest["metrics"]["reference_set"]["accuracy"] <= 1
    golden = json.loads(store.get(f"releases/{settings.model_name}/{manifest['version']}/golden_vectors.json"))
    raw = np.array([w["raw"] for w in golden["windows"]])  # the golden windows: the reference set's raw recordings
    windows = np.concatenate([u.windows for u in reference.load(store, settings.model_name, TASK)])
    assert len(raw) and all(any(np.allclose(r, w) for w in windows) for r in raw[:3])


def test_held_out_pseudonyms_are_stable_as_the_fleet_grows_and_both_sides_are_never_empty():
    fleet_now = [f"{i:064x}" for i in range(50)]
    later = fleet_now + [f"{i:064x}" for i in range(50, 90)]
    now_held = holdout.held_out(fleet_now, 0.2, "tandem-har")
    assert now_held <= holdout.held_out(later, 0.2, "tandem-har")  # held out once, held out for good
    assert 0 < len(now_held) < len(fleet_now) and holdout.held_out(fleet_now, 0.2, "another-model") != now_held
    for n in (2, 3, 5):  # tiny fleets: at least one on each side
        held = holdout.held_out(fleet_now[:n], 0.2, "tandem-har")
        assert 1 <= len(held) < n
    assert not holdout.held_out(fleet_now[:1], 0.2, "tandem-har") and not holdout.held_out(fleet_now, 0.0, "tandem-har")


def test_training_never_sees_a_held_out_pseudonym(tandem_home):
    settings = Settings()
    share_synthetic(settings)
    ctx = pipeline.Context(settings)
    pipeline.ingest_new(ctx)
    snapshot = pipeline.snapshot_dataset(ctx)
    trained = candidate.training_rows(ctx.task, snapshot, settings)
    held = set(snapshot.frame["pseudonym"]) - set(trained["pseudonym"])
    users, source = candidate.evaluation_users(ctx.task, ctx.store, snapshot, settings)
    assert source == "held-out pseudonyms" and held and {u.user_id for u in users} == held
    params = RunParams.model_validate(FAST)
    result = pipeline.pretrain_model(ctx, snapshot, params, run_id=None)  # the flow's own step
    assert result.n_train + result.n_val == len(trained) < len(snapshot.frame)


def _regression_task(folder):
    """A team's tabular regression task in large units (as `tandem init --template tabular-regression` makes it)."""
    folder.mkdir(parents=True)
    text = (tasks.BUILTIN.parent / "task" / "templates" / "tabular-regression" / "task.yaml").read_text()
    (folder / "task.yaml").write_text(text.replace("__NAME__", "lift").replace("max: 10 ", "max: 5000 "))
    return tasks.read(folder)


def test_a_regression_tasks_reference_set_registers_loads_and_is_held_out_as_numbers(tmp_path):
    """Issue 17: `reference add`/`show` raised KeyError 'label_counts' for any regression task. Its
    manifest states the target's range, its users' labels are numbers, and a target outside the task's
    declared range is refused; the held-out users of its table read as numbers too."""
    task = _regression_task(tmp_path / "lift")
    assert task.target.max == 5000
    rng = np.random.default_rng(0)
    windows = np.stack([np.full(6, 3.0), rng.integers(0, 3, 6).astype(float), np.zeros(6)], axis=1)[:, None, :]
    arrays = {"windows": windows, "labels": np.array([120.0, 2500.0, 4999.5, 80.0, 300.0, 1200.0]),
              "devices": np.array(["a", "a", "a", "b", "b", "b"]), "window_keys": np.array([str(i) for i in range(6)]),
              "captured_at": np.arange(6).astype("datetime64[D]").astype("datetime64[ms]")}
    store = LocalStore(tmp_path / "store")
    manifest = reference.add(store, "m", _npz(**arrays), task)
    assert manifest["target_range"] == [80.0, 4999.5] and "label_counts" not in manifest
    users = reference.load(store, "m", task)
    assert [u.user_id for u in users] == ["a", "b"] and users[0].labels.dtype == np.float64
    assert users[0].y.tolist() == [120.0, 2500.0, 4999.5]
    with pytest.raises(reference.ReferenceError, match=r"outside its range \[0, 5000\]"):
        reference.add(store, "m", _npz(**{**arrays, "labels": arrays["labels"] + 1000}), task)
    frame = pd.DataFrame({"pseudonym": ["p1", "p1", "p2"], "window_id": ["w1", "w2", "w3"],
                          "captured_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01"], utc=True),
                          **{name: [1.0, 2.0, 3.0] for name in features.of(task).feature_names}, "label": [10.0, 4000.0, 7.5]})
    held = holdout.as_users(frame, task)
    assert [u.user_id for u in held] == ["p1", "p2"] and held[0].y.tolist() == [10.0, 4000.0]
