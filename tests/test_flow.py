"""The main job end to end on embedded defaults: a real Prefect engine (ephemeral), a real MLflow
SQLite store, real GX validation, the local store; and once against moto's S3 server over HTTP."""

from __future__ import annotations

import pytest

from tandem.data.ingest import batch_ref, ledger_entries
from tandem.data.store import sha256_hex, store_from_settings
from tandem.release.layout import list_releases, pull, read_channel
from tandem.release.signing import trusted_from
from tandem.settings import Settings
from tests.batches import bad_batches
from tests.flow_helpers import run_flow, share_synthetic


def test_flow_publishes_a_verified_updatable_release_and_then_does_nothing(tandem_home, tmp_path):
    settings = Settings()
    sharers, _ = share_synthetic(settings)
    store = store_from_settings(settings)
    for name, data in bad_batches(sharers[0]).items():
        store.put(f"incoming/bad/{name}.parquet", data)

    first = run_flow()
    assert first["status"] == "published", first
    assert first["quarantined"] == 4 and first["accepted"] == first["new_batches"] - 4
    reasons = {k.split("/")[-1].removesuffix(".parquet"): r for k, r in first["quarantine_reasons"].items()}
    assert "parquet" in reasons["truncated"].lower()
    assert "gravity_x_mean" in reasons["wrong_type"]
    assert "pseudonym" in reasons["raw_email"] and "jane.doe@example.com" not in reasons["raw_email"]
    assert "label" in reasons["bad_label"]
    for name in reasons:  # nothing lost: the batch stays in incoming/ and a copy with its report sits in quarantine/
        assert store.exists(f"incoming/bad/{name}.parquet")
        batch_id = batch_ref(f"incoming/bad/{name}.parquet").batch_id
        assert store.exists(f"quarantine/{batch_id}/validation.json") and store.exists(f"quarantine/{batch_id}/reason.txt")

    manifest = pull(store, settings.model_name, tmp_path / "app", trusted_from(settings), channel="staging")
    model_bytes = (tmp_path / "app" / "model.mlmodel").read_bytes()
    assert sha256_hex(model_bytes) == manifest["files"]["model.mlmodel"]["sha256"]
    assert manifest["metrics"]["accuracy"] > 0.8
    assert manifest["mlflow"]["version"] == first["version"]
    assert manifest["class_labels"] == ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"]
    assert manifest["dataset"]["batches"] == first["accepted"]

    import coremltools as ct

    spec = ct.utils.load_spec(str(tmp_path / "app" / "model.mlmodel"))
    assert spec.isUpdatable and spec.specificationVersion >= 4
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == manifest["class_labels"]

    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(first["mlflow_run_id"])
    assert run.data.metrics["eval_accuracy"] == pytest.approx(manifest["metrics"]["accuracy"])
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 2
    assert str(client.get_model_version_by_alias(settings.model_name, "staging").version) == first["version"]

    from prefect.artifacts import Artifact

    report = Artifact.get("train-and-release-report")  # what a person reads in the Prefect UI
    assert f"version {first['version']}" in report.data and "quarantined batch" in report.data
    assert "jane.doe@example.com" not in report.data
    assert first["mlflow_url"] in Artifact.get("mlflow-run").data

    second = run_flow()
    assert second["status"] == "up-to-date" and second["new_batches"] == 0
    assert [m["version"] for m in list_releases(store, settings.model_name)] == [first["version"]]
    entries = ledger_entries(store)
    assert len(entries) == len({e["batch_id"] for e in entries}) == first["new_batches"]


def test_a_crashed_publish_is_completed_by_the_next_run(tandem_home, monkeypatch):
    """Fault injection: the channel write fails once (a store outage we cannot cause for real here)."""
    settings = Settings()
    share_synthetic(settings)
    store = store_from_settings(settings)
    import tandem.release.channels

    def outage(*args, **kwargs):
        raise OSError("store outage")

    with monkeypatch.context() as fault:
        fault.setattr(tandem.release.channels, "set_channel", outage)
        with pytest.raises(OSError):
            run_flow()
    assert read_channel(store, settings.model_name, "staging") is None
    batches_after_crash = len(ledger_entries(store))

    again = run_flow()
    assert again["status"] == "published" and again["new_batches"] == 0
    assert len(ledger_entries(store)) == batches_after_crash  # nothing counted twice
    assert read_channel(store, settings.model_name, "staging")["version"] == again["version"]
    for m in list_releases(store, settings.model_name):  # every visible release is complete
        assert all(store.exists(f"releases/{settings.model_name}/{m['version']}/{f}") for f in m["files"])


def test_flow_runs_against_s3(tandem_home, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("TANDEM_STORE", f"s3://{s3_bucket}/tandem")
    monkeypatch.setenv("TANDEM_S3_ENDPOINT_URL", s3_endpoint)
    settings = Settings()
    share_synthetic(settings)
    result = run_flow()
    assert result["status"] == "published"
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"tandem/channels/{settings.model_name}/staging.json" in keys
    assert f"tandem/releases/{settings.model_name}/{result['version']}/model.mlmodel" in keys
