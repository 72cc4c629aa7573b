"""The k-NN personal model (Core ML's native few-label route): the pipeline derived from a released
network, its prediction and update rule, and the update policy choosing it per user."""

from __future__ import annotations

import numpy as np
import pytest
import release_shaped

from tandem.device.knn import RELEASE_FILE, embed, knn_pipeline, knn_update, release_files
from tandem.device.knn_stage import samples
from tandem.device.runtime import ModelError, run_network
from tandem.device.update_policy import UpdatePolicy, personalize

KNN = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, knn_neighbors=3)


@pytest.fixture(scope="module")
def base():
    return release_shaped.model()


def test_the_pipeline_embeds_with_the_released_layers_and_starts_empty(base):
    pipeline = knn_pipeline(base, 3)
    assert pipeline.kind == "pipelineClassifier" and pipeline.class_labels == base.class_labels
    assert (pipeline.label_name, pipeline.probabilities_name) == (base.label_name, base.probabilities_name)
    X = release_shaped.rows(base, 5)
    hidden = run_network(base.spec.neuralNetworkClassifier, {"features": X})["body.0.relu"]
    np.testing.assert_array_equal(embed(pipeline, X), hidden)
    assert len(samples(pipeline.spec.pipelineClassifier.pipeline.models[-1])[0]) == 0
    assert set(pipeline.predict(X)) == {base.class_labels[0]}  # the empty index answers its default label
    assert knn_pipeline(base.to_bytes(), 3).sha256 == pipeline.sha256  # derived from the bytes alone, every time
    assert release_files(base, None) == {} and release_files(base, 3) == {RELEASE_FILE: pipeline.to_bytes()}


def test_an_update_stores_float32_embeddings_and_prediction_votes_by_the_rule(base):
    X, y = release_shaped.nearest_centre_user(base, 2)
    one = knn_update(knn_pipeline(base, 1), X[:30], y[:30])
    stored, labels = samples(one.spec.pipelineClassifier.pipeline.models[-1])
    np.testing.assert_array_equal(stored, embed(one, X[:30]).astype(np.float32))
    assert labels.tolist() == y[:30].tolist()
    assert (one.predict(X[:30]) == y[:30]).all()  # k = 1: a stored row is its own nearest neighbour
    three = knn_update(knn_pipeline(base, 3), X[:30], y[:30])
    Z, q = embed(three, X[30:]), three.predict_proba(X[30:])
    d2 = ((Z[:, None] - stored[None]) ** 2).sum(axis=2)
    for r in range(len(Z)):
        voters = y[:30][np.argsort(d2[r], kind="stable")[:3]]
        expected = [np.mean(voters == c) for c in three.class_labels]
        np.testing.assert_allclose(q[r], expected)
        top = max(expected)
        assert three.predict(X[30 + r:31 + r])[0] == next(v for v in voters if np.mean(voters == v) == top)


def test_a_tie_goes_to_the_class_of_the_nearest_voter(base):
    X, y = release_shaped.nearest_centre_user(base, 2)
    two = knn_update(knn_pipeline(base, 2), X[:2], ["walk", "sit"])  # two voters, one vote each
    Z = embed(two, X[:2])
    assert two.predict(X[:1])[0] == "walk" and two.predict(X[1:2])[0] == "sit"
    assert np.linalg.norm(Z[0] - Z[1]) > 0


def test_refusals_are_one_line(base):
    with pytest.raises(ValueError, match="not among the model's classes"):
        knn_update(knn_pipeline(base, 3), release_shaped.rows(base, 1), ["run"])
    with pytest.raises(ValueError, match="within 1..1000"):
        knn_pipeline(base, 0)
    regressor = release_shaped.model(seed=1, regression=True, labels=("value",))
    with pytest.raises(ModelError, match="needs a released neural network classifier"):
        knn_pipeline(regressor, 3)
    with pytest.raises(ValueError, match="needs a classifier"):
        personalize(regressor, *release_shaped.labelled(regressor), KNN)


@pytest.mark.parametrize("seed, method", [(2, "knn"), (3, "fine_tune")])
def test_the_policy_gives_each_user_the_candidate_that_passed_with_more_rows(base, seed, method):
    X, y = release_shaped.nearest_centre_user(base, seed)
    result = personalize(base, X, y, KNN)
    assert result.method == method and result.knn["accepted"]
    fine_tune_net, knn_net = result.acceptance["net"], result.knn["net"]
    assert (knn_net > fine_tune_net) == (method == "knn")
    turn = result.turns[0]
    base_errors, knn_errors = np.asarray(turn["holdout_errors"][0]), np.asarray(turn["knn"]["errors"])
    assert knn_net == int(np.sum(knn_errors < base_errors) - np.sum(knn_errors > base_errors))
    if method == "knn":  # the user's model is the pipeline holding every labelled row, no epoch run
        assert result.epochs == 0 and len(samples(result.model.spec.pipelineClassifier.pipeline.models[-1])[0]) == 60
    else:
        assert result.epochs > 0 and result.model.kind == "neuralNetworkClassifier"


def test_neither_candidate_passing_keeps_the_base_and_without_knn_nothing_changes(base):
    X, y = release_shaped.labelled(base, per_class=10)
    result = personalize(base, X, y, KNN)
    assert result.method == "base" and not result.knn["accepted"] and result.model.sha256 == base.sha256
    plain = personalize(base, X, y, UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5))
    assert plain.knn == {} and "knn" not in plain.turns[0] and plain.holdout_losses == result.holdout_losses
    assert "knn_neighbors" not in UpdatePolicy().as_dict() and UpdatePolicy.from_dict(KNN.as_dict()) == KNN


def test_the_task_turns_it_on_for_classes_only_and_its_digest_ignores_it():
    from pydantic import ValidationError

    from tandem import task as tasks
    from tandem.training.device_update import policy_for

    har, grunfeld = tasks.resolve("har"), tasks.resolve("grunfeld")
    on = har.model_validate({**har.model_dump(), "device": {**har.device.model_dump(), "knn_neighbors": 3}})
    assert policy_for(on).knn_neighbors == 3 and policy_for(har).knn_neighbors is None
    assert on.digest() == har.digest()  # the app's choice of update, not what a batch means
    with pytest.raises(ValidationError, match="predicts classes; this task's target is numeric"):
        grunfeld.model_validate({**grunfeld.model_dump(), "device": {**grunfeld.device.model_dump(), "knn_neighbors": 3}})


def test_the_device_cli_checks_predicts_and_personalizes_the_knn_model(base, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from tandem.cli.device import app
    from tandem.device.knn import stored_labels
    from tandem.device.runtime import DeviceModel
    from tandem.training import export

    names = [f"f{i}" for i in range(8)]
    spec = export.to_updatable_mlmodel(release_shaped.weights(), ["sit", "stand", "walk"],
                                       updatable_layers=["body.0", "head"], feature_names=names)
    network = DeviceModel.load(spec.SerializeToString())
    pipeline = knn_pipeline(network, 1).save(tmp_path / "personal_knn.mlmodel")
    X, y = release_shaped.nearest_centre_user(network, 2)
    data = tmp_path / "labelled.parquet"
    pq.write_table(pa.table({**{n: X[:, i] for i, n in enumerate(names)}, "label": y.tolist()}), data)
    runner = CliRunner()
    done = runner.invoke(app, ["check", str(pipeline)])
    assert done.exit_code == 0 and "ok    knn-index" in done.output
    done = runner.invoke(app, ["personalize", str(pipeline), str(data), "--out", str(tmp_path / "me.mlmodel")])
    assert done.exit_code == 0, done.output
    assert "stored 60 rows" in done.output and "after: 1.0000" in done.output  # k = 1: each row its own neighbour
    assert stored_labels(tmp_path / "me.mlmodel").tolist() == y.tolist()
    done = runner.invoke(app, ["predict", str(tmp_path / "me.mlmodel"), str(data)])
    assert done.exit_code == 0 and "accuracy: 1.0000 on 60 rows" in done.output
    done = runner.invoke(app, ["personalize", str(pipeline), str(data), "--out", str(tmp_path / "x.mlmodel"),
                               "--epochs", "3"])
    assert done.exit_code == 2 and "has no epochs" in done.output and not (tmp_path / "x.mlmodel").exists()
