"""Writes the TandemModel XCTests' fixtures (small: a few kB) from the Python device runtime.

    .venv/bin/python swift/Tests/TandemModelTests/Fixtures/make_fixtures.py

Release-shaped models (the release exporter on seeded weights: batchnorm standardization, a dense
body with ReLU, an updatable head; a classifier and a regressor), feature rows with the Python
runtime's predictions, and update-policy traces as a release's golden_vectors.json holds them:
classifier_policy.json (the acceptance check keeps the base: epoch E is no better on the held-out
rows), classifier_policy_accepted.json (another user: the check passes, task B refits E epochs),
classifier_policy_v0.json (a release from before the check: no accept_margin, no held-out errors,
no turns), classifier_policy_folds.json and regressor_policy_folds.json (holdout_folds 3: task A
runs once per fold, every labelled row held out once) and regressor_policy.json; the same shapes with a calibration layer as the only updatable one
(task.yaml `model.updatable: calibration`): *_calibration.mlmodel and *_calibration_policy.json.
The k-NN personal model (task.yaml `device.knn_neighbors: 3`): classifier_knn.mlmodel (the pipeline derived from
classifier.mlmodel, its index empty), classifier_knn_rows.json (rows stored by an update, then rows predicted:
embeddings, labels, probabilities) and classifier_policy_knn_{knn,fine_tune,base}.json (the policy with the k-NN
candidate, three users: the k-NN model wins, the fine-tune wins, neither passes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "device")]

import release_shaped  # noqa: E402

from tandem.device.knn import embed, knn_pipeline, knn_update  # noqa: E402
from tandem.device.update_policy import UpdatePolicy  # noqa: E402

KNN = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, knn_neighbors=3)


def write(name: str, payload) -> None:
    data = payload if isinstance(payload, bytes) else (json.dumps(payload, indent=1) + "\n").encode()
    (HERE / name).write_bytes(data)
    print(f"wrote {name} ({len(data)} bytes)")


def before_the_check(model, X, y) -> dict:
    """A trace as releases wrote it before the acceptance check: the policy without accept_margin
    (an app then refits whenever E > 0) and no held-out errors, best epoch or acceptance."""
    policy = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, accept_margin=None)  # release_shaped's, unchecked
    trace = release_shaped.policy_trace(model, X, y, policy)
    del trace["policy"]["accept_margin"]
    del trace["policy"]["holdout_folds"]
    for key in ("holdout_errors", "best_epoch", "acceptance", "turns"):
        del trace[key]
    return trace


def main() -> None:
    clf = release_shaped.model(seed=0)
    X = release_shaped.rows(clf, 12)
    write("classifier.mlmodel", clf.to_bytes())
    write("classifier_rows.json", {"rows": X.tolist(), "probabilities": clf.predict_proba(X).tolist(),
                                   "labels": clf.predict(X).tolist(), "class_labels": clf.class_labels})
    Xl, yl = release_shaped.labelled(clf)
    write("classifier_policy.json", {"update_policy": release_shaped.policy_trace(clf, Xl, yl)})
    Xa, ya = release_shaped.labelled(clf, per_class=10, seed=4)
    write("classifier_policy_accepted.json", {"update_policy": release_shaped.policy_trace(clf, Xa, ya)})
    write("classifier_policy_v0.json", {"update_policy": before_the_check(clf, Xl, yl)})
    folds = UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5, accept_margin=0.05, holdout_folds=3)
    write("classifier_policy_folds.json", {"update_policy": release_shaped.policy_trace(clf, Xa, ya, folds)})

    reg = release_shaped.model(seed=1, regression=True, labels=("value",))
    X = release_shaped.rows(reg, 12)
    write("regressor.mlmodel", reg.to_bytes())
    write("regressor_rows.json", {"rows": X.tolist(), "values": reg.predict(X).reshape(-1, 1).tolist()})
    Xl, yl = release_shaped.labelled(reg)
    write("regressor_policy.json", {"update_policy": release_shaped.policy_trace(reg, Xl, yl)})
    write("regressor_policy_folds.json", {"update_policy": release_shaped.policy_trace(reg, Xl, yl, folds)})

    for name, m in (("classifier", release_shaped.model(seed=0, updatable=("calibration",))),
                    ("regressor", release_shaped.model(seed=1, regression=True, labels=("value",),
                                                       updatable=("calibration",)))):
        Xl, yl = release_shaped.labelled(m, per_class=10, seed=4) if m.is_classifier else release_shaped.labelled(m)
        trace = release_shaped.policy_trace(m, Xl, yl)
        assert trace["epochs"] > 0, f"the {name}'s calibration trace should update (it checks the update itself)"
        write(f"{name}_calibration.mlmodel", m.to_bytes())
        write(f"{name}_calibration_policy.json", {"update_policy": trace})

    knn_fixtures(clf)


def knn_fixtures(clf) -> None:
    pipeline = knn_pipeline(clf, KNN.knn_neighbors)
    write("classifier_knn.mlmodel", pipeline.to_bytes())
    X, y = release_shaped.nearest_centre_user(clf, 2)
    stored, query = slice(0, 40), slice(40, 60)
    updated = knn_update(pipeline, X[stored], y[stored])
    write("classifier_knn_rows.json", {
        "update_inputs": X[stored].tolist(), "update_labels": y[stored].tolist(), "rows": X[query].tolist(),
        "embeddings": embed(pipeline, X[query]).tolist(), "labels": updated.predict(X[query]).tolist(),
        "probabilities": updated.predict_proba(X[query]).tolist(), "empty_labels": pipeline.predict(X[query]).tolist(),
        "class_labels": updated.class_labels})
    users = {"knn": release_shaped.nearest_centre_user(clf, 2), "fine_tune": release_shaped.nearest_centre_user(clf, 3),
             "base": release_shaped.labelled(clf, per_class=10)}
    for method, (Xu, yu) in users.items():
        trace = release_shaped.policy_trace(clf, Xu, yu, KNN)
        assert trace["method"] == method, f"the {method} user's trace gave {trace['method']}"
        write(f"classifier_policy_knn_{method}.json", {"update_policy": trace})


if __name__ == "__main__":
    main()
