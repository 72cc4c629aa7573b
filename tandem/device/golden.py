"""Golden vectors: what the app's featurizer, MLModel prediction and MLUpdateTask must reproduce.

``golden_vectors`` records, per raw window, the features, the model input, the probabilities and
the label this runtime computes, plus one update trace (one epoch, one mini-batch, no shuffle, so
sample order cannot matter). ``swift_xctest`` writes the XCTest that checks the app against it.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.device.update import resolve_params, trainable, updatable_weights, update
from tandem.device.update_policy import UpdatePolicy, personalize

FORMAT = "tandem-golden/v1"


def _floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def _one_batch(spec, n: int, requested: int | None) -> int:
    """A mini-batch size the spec allows, <= n (so the trace is exactly one mini-batch)."""
    _, nn, _ = trainable(spec)
    opt = nn.updateParams.optimizer
    p = getattr(opt, opt.WhichOneof("OptimizerType")).miniBatchSize
    if requested is not None:
        return int(requested)
    which = p.WhichOneof("AllowedValues")
    if which == "set":
        fits = [v for v in p.set.values if v <= n]
        if not fits:
            raise ValueError(f"need at least {min(p.set.values)} update samples, got {n}")
        return int(max(fits))
    if which == "range":
        return int(min(n, p.range.maxValue))
    return n


def golden_vectors(model, raw_windows, featurize: Callable, labels=None, update_inputs=None,
                   update_labels=None, *, mini_batch_size: int | None = None,
                   learning_rate: float | None = None, feature_names=None) -> dict:
    """Golden record for ``model`` (DeviceModel/path/bytes, a classifier or a regressor: a
    regressor's windows carry its ``prediction`` instead of probabilities).

    raw_windows: (n, window, channels) raw inputs; featurize: window -> feature vector (the featurization
    the model's feature spec describes, e.g. ``tandem.contract.features.of(task).featurize_window``: the
    device side never holds a task); labels: true labels of the windows (optional). The update
    trace uses update_inputs (feature vectors (m, d), or raw windows (m, 128, 6)) with update_labels,
    or else the windows themselves with ``labels``; it is skipped when there are no labels.
    """
    model = DeviceModel.load(model)
    raw = np.asarray(raw_windows, dtype=np.float64)
    feats = np.stack([np.asarray(featurize(w), dtype=np.float64) for w in raw])
    classifier = model.is_classifier
    probs = model.predict_proba(feats) if classifier else None
    predictions = None if classifier else model.predict(feats)
    class_labels = model.class_labels if classifier else []
    windows = []
    for i in range(len(raw)):
        w = {
            "raw": _floats(raw[i]),
            "features": _floats(feats[i]),
            "model_input": _floats(feats[i]),  # the app feeds raw features; standardization is in the model
        }
        if classifier:
            w.update({"probabilities": dict(zip(map(str, class_labels), _floats(probs[i]))),
                      "probability_vector": _floats(probs[i]), "label": str(class_labels[int(probs[i].argmax())])})
        else:
            w["prediction"] = float(predictions[i])
        if labels is not None:
            w["true_label"] = str(labels[i]) if classifier else float(labels[i])
        windows.append(w)
    golden = {
        "format": FORMAT,
        "model": {
            "sha256": model.sha256,
            "input_name": model.input_name,
            "label_name": model.label_name,
            "probabilities_name": model.probabilities_name if classifier else None,
            "output_name": model.spec.description.output[0].name,
            "kind": "classifier" if classifier else "regressor",
            "class_labels": [str(c) for c in class_labels],
        },
        "windows": windows,
    }
    if feature_names is not None:
        golden["feature_names"] = list(feature_names)
    if update_inputs is not None or labels is not None:
        golden["update"] = _update_trace(model, feats, labels, update_inputs, update_labels, featurize,
                                         mini_batch_size, learning_rate)
    return golden


def _update_trace(model, feats, labels, update_inputs, update_labels, featurize, mini_batch_size, learning_rate):
    if update_inputs is None:
        X, y = feats, labels
    else:
        X = np.asarray(update_inputs, dtype=np.float64)
        if X.ndim == 3:  # raw windows
            X = np.stack([np.asarray(featurize(w), dtype=np.float64) for w in X])
        y = update_labels if update_labels is not None else labels
    if y is None or len(y) != len(X):
        raise ValueError("the update trace needs one label per update input")
    m = _one_batch(model.spec, len(X), mini_batch_size)
    X, y = X[:m], _targets(model, list(y)[:m])
    overrides = dict(epochs=1, mini_batch_size=m, shuffle=False)
    if learning_rate is not None:
        overrides["learning_rate"] = learning_rate
    resolve_params(model.spec, **overrides)  # fail early, naming the parameter the spec refuses
    result = update(model, X, y, **overrides)
    after = result.model
    return {
        "inputs": _floats(X),
        "labels": y,
        "params": result.params.as_dict(),
        "loss_before": result.loss_before,
        "loss_after": result.loss_after,
        "updated_layers": [
            {"name": name, "shape": list(v["weights"].shape), "weights": _floats(v["weights"].ravel()),
             "bias": None if v["bias"] is None else _floats(v["bias"])}
            for name, v in updatable_weights(after).items()
        ],
        **_after(after, X),
        "personal_sha256": after.sha256,
    }


def _targets(model, y) -> list:
    """Class names as text; a regressor's targets as floats."""
    return [str(v) for v in y] if model.is_classifier else [float(v) for v in y]


def _after(model, X) -> dict:
    if model.is_classifier:
        return {"probabilities_after": _floats(model.predict_proba(X))}
    return {"predictions_after": _floats(model.predict(X))}


def policy_trace(model, X, y, policy=None) -> dict:
    """The app's update policy (tandem.device.update_policy) on labelled feature vectors: the row
    order it feeds, the held-out rows, the held-out loss and each held-out row's error after each
    epoch of task A (index 0: the base), the acceptance check on the best epoch, the epochs of task B and the personal model's probabilities on the inputs; with `holdout_folds` > 1, the same per turn in `turns`.
    Rows the policy refuses (NaN, inf, or a value the base overflows on) are listed in `skipped`; the order
    and the personal model's outputs cover the other rows only.
    With `knn_neighbors`: each turn's k-NN candidate (`turns[i]["knn"]`: held-out errors and check), its check over
    the turns (`knn`) and what the user got (`method`: "base", "fine_tune" or "knn")."""
    policy = policy or UpdatePolicy()
    model = DeviceModel.load(model)
    X = np.asarray(X, dtype=np.float64)
    y = _targets(model, y)
    result = personalize(model, X, np.asarray(y), policy)
    usable = np.setdiff1d(np.arange(len(X)), result.skipped)  # the rows the policy fed (skipped: not predictable)
    return {
        "policy": policy.as_dict(),
        "inputs": _floats(X),
        "labels": y,
        "skipped": result.skipped,
        "order": result.order,  # indices into the usable rows
        "holdout": result.holdout,
        "holdout_losses": result.holdout_losses,
        "holdout_errors": result.holdout_errors,  # index e: each held-out row's error (0/1, or |error|)
        "best_epoch": result.best_epoch,
        "acceptance": result.acceptance,  # the check on epoch E ({} when task A did not run or E = 0)
        "turns": result.turns,  # each run of task A (policy holdout_folds; the fields above: the first one's)
        "epochs": result.epochs,
        **({"knn": result.knn, "method": result.method} if policy.knn_neighbors is not None else {}),
        **_after(result.model, X[usable]),
        "personal_sha256": result.model.sha256,
    }



# ---- Swift -----------------------------------------------------------------------------------

# The XCTest sources (a classifier's probabilities, a regressor's values), calling TandemKit, with
# __GOLDEN__, __MODEL__, __APP_MODULE__, __FORMAT__ and __TOLERANCE__ to fill in.
_TEMPLATES = resources.files("tandem.device") / "templates"
_SWIFT = {"classifier": (_TEMPLATES / "TandemGoldenTests.swift.in").read_text(),
          "regressor": (_TEMPLATES / "TandemGoldenRegressorTests.swift.in").read_text()}


def swift_xctest(golden_json_name: str = "TandemGolden", tolerance: float = 1e-4, *,
                 model_resource: str = "Tandem", app_module: str = "Tandem", kind: str = "classifier") -> str:
    """Swift XCTest source checking the app against ``<golden_json_name>.json`` (`kind`: the
    golden model's, "classifier" or "regressor") through TandemKit: its Featurizer over the
    bundled feature_spec.json, the model (Core ML's ``<model_resource>.mlmodelc``, or TandemKit's
    interpreter of ``<model_resource>.mlmodel``), its update policy and one MLUpdateTask step. The
    test target of ``app_module`` depends on TandemKit; TANDEM_GOLDEN_DIR may name a pulled release.
    """
    golden_json_name = golden_json_name.removesuffix(".json")
    for name, value in (("golden_json_name", golden_json_name), ("model_resource", model_resource),
                        ("app_module", app_module)):
        if not value or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError(f"{name} must be a plain identifier, got {value!r}")
    if not tolerance > 0:
        raise ValueError("tolerance must be positive")
    if kind not in _SWIFT:
        raise ValueError(f"kind must be one of {sorted(_SWIFT)}, got {kind!r}")
    return (_SWIFT[kind].replace("__GOLDEN__", golden_json_name)
            .replace("__MODEL__", model_resource)
            .replace("__APP_MODULE__", app_module.replace("-", "_"))
            .replace("__FORMAT__", FORMAT)
            .replace("__TOLERANCE__", repr(float(tolerance))))
