"""From the trained network to an updatable Core ML model: a NeuralNetworkClassifier (cross-entropy)
or, for a task with a numeric target, a NeuralNetworkRegressor (MSE).

Built layer by layer with coremltools' NeuralNetworkBuilder from the torch weights (not ct.convert:
that emits softmaxND and batchedMatMul, which cannot be updated; see docs/stack.md):

    features (N_FEATURES,) DOUBLE -> batchnorm "standardize" (gamma = 1/std, beta = -mean/std)
      -> innerProduct "body.0" -> ReLU "body.0.relu" -> ... -> innerProduct "head"
      [-> innerProduct "calibration", when it is what the device updates]
      -> softmax "softmax" (blob "labelProbability") -> outputs "labelProbability" (dict), "label"

The chosen innerProduct layers are updatable; the loss is categorical cross-entropy on the softmax
output with the string "label" as training target. coremltools cannot run the model on Linux; the
device runtime's numpy interpreter checks parity instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tandem.task import Task
from tandem.training.device_update import DeviceUpdateConfig
from tandem.training.model import CALIBRATION, export_weights

INPUT_NAME = "features"
PROBABILITIES = "labelProbability"
LABEL = "label"
LOSS_LAYER = "lossLayer"
SOFTMAX_LAYER = "softmax"
STANDARDIZE_LAYER = "standardize"


def _coremltools():
    """Import coremltools with its Linux import warnings (no libcoremlpython, torch version) quieted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            import coremltools
            from coremltools.models import datatypes
            from coremltools.models.neural_network import (
                AdamParams,
                NeuralNetworkBuilder,
                SgdParams,
            )
        finally:
            logging.disable(level)
    return coremltools, datatypes, NeuralNetworkBuilder, AdamParams, SgdParams


def regression_output(task: Task | None) -> str:
    """A regressor's output: the task's target name (the device trains against "<name>_true")."""
    return getattr(task.target, "name", "value") if task is not None else "value"


def _weights(model_or_weights) -> dict:
    if isinstance(model_or_weights, dict):
        return model_or_weights
    return export_weights(model_or_weights)


def with_calibration(w: dict) -> list[dict]:
    """The layers with an affine "calibration" layer after the head, the identity at release: a
    classifier's logits pass unchanged (K x K identity), a regressor's head goes back to the
    standardized target and the calibration holds the target's sd and mean. Updating only it mixes a
    user's logits, or moves a user's scale and level, with a step size in any target's units alike."""
    layers = [dict(layer) for layer in w["layers"]]
    head = layers[-1]
    k = int(np.asarray(head["W"]).shape[0])
    if w.get("regression"):
        t_mean, t_std = float(w.get("target_mean", 0.0)), float(w.get("target_std", 1.0))  # none given: as is
        head["W"] = (np.asarray(head["W"], np.float64) / t_std).astype(np.float32)
        head["b"] = ((np.asarray(head["b"], np.float64) - t_mean) / t_std).astype(np.float32)
        W, b = np.full((1, 1), t_std), np.full(1, t_mean)
    else:
        W, b = np.eye(k), np.zeros(k)
    layers.append({"name": CALIBRATION, "W": W.astype(np.float32), "b": b.astype(np.float32), "activation": None})
    return layers


def to_updatable_mlmodel(
    model_or_weights,
    class_labels: Sequence[str],
    updatable_layers: Iterable[str] = ("head",),
    update: DeviceUpdateConfig | None = None,
    *,
    feature_names: Sequence[str] | None = None,
    metadata: dict | None = None,
    version: str | None = None,
    task: Task | None = None,
):
    """An updatable Core ML NeuralNetworkClassifier spec (coremltools.proto.Model_pb2.Model), or a
    NeuralNetworkRegressor when the weights are a regressor's (`class_labels` is then unused).

    model_or_weights: a `tandem.training.model.Classifier` or the dict of `tandem.training.model.export_weights`.
    updatable_layers: dense layer names ("head", "body.0", ...) the app may update on the device, or
    "calibration" (`with_calibration` adds it).
    update: the on-device update settings (defaults and allowed ranges; the task's `device` section, or
    the generic `DeviceUpdateConfig()`, when None).
    metadata: user-defined string metadata (e.g. model version, run id, dataset snapshot).
    task: whose model it is (named in its descriptions: the task, its target and unit).
    """
    update = update or (DeviceUpdateConfig.for_task(task) if task is not None else DeviceUpdateConfig())
    _, datatypes, NeuralNetworkBuilder, AdamParams, SgdParams = _coremltools()
    w = _weights(model_or_weights)
    regression = bool(w.get("regression"))
    class_labels = [str(c) for c in class_labels]
    updatable_layers = list(updatable_layers)
    layers = with_calibration(w) if CALIBRATION in updatable_layers else w["layers"]
    n_features = int(len(w["mean"]))
    n_classes = int(np.asarray(layers[-1]["W"]).shape[0])
    if regression and n_classes != 1:
        raise ValueError(f"a regressor has one output, this head has {n_classes}")
    if not regression and len(class_labels) != n_classes:
        raise ValueError(f"{len(class_labels)} class labels for a model with {n_classes} outputs")
    if len(set(class_labels)) != len(class_labels):
        raise ValueError("class labels must be unique")
    names = [layer["name"] for layer in layers]
    if not updatable_layers:
        raise ValueError("at least one layer must be updatable")
    for name in updatable_layers:
        if name not in names:
            raise ValueError(f"unknown updatable layer {name!r}: the dense layers are {names}")
    u = update
    lr_min, lr_max = u.learning_rate_range

    output = regression_output(task) if regression else PROBABILITIES
    builder = NeuralNetworkBuilder(
        input_features=[(INPUT_NAME, datatypes.Array(n_features))],
        output_features=[(output, datatypes.Array(n_classes))],
        mode="regressor" if regression else "classifier",
    )
    mean = np.asarray(w["mean"], dtype=np.float64)
    std = np.asarray(w["std"], dtype=np.float64)
    builder.add_batchnorm(
        name=STANDARDIZE_LAYER, channels=n_features,
        gamma=(1.0 / std).astype(np.float32), beta=(-mean / std).astype(np.float32),
        mean=np.zeros(n_features, np.float32), variance=np.ones(n_features, np.float32),
        input_name=INPUT_NAME, output_name="standardized", epsilon=0.0,
    )
    blob = "standardized"
    for i, layer in enumerate(layers):
        W = np.asarray(layer["W"], dtype=np.float32)
        b = np.asarray(layer["b"], dtype=np.float32)
        out = layer["name"] if i < len(layers) - 1 else (output if regression else "logits")
        builder.add_inner_product(name=layer["name"], W=W, b=b, input_channels=W.shape[1],
                                  output_channels=W.shape[0], has_bias=True, input_name=blob, output_name=out)
        blob = out
        if layer["activation"] == "relu":
            builder.add_activation(name=f"{layer['name']}.relu", non_linearity="RELU", input_name=blob,
                                   output_name=f"{layer['name']}.relu")
            blob = f"{layer['name']}.relu"
        elif layer["activation"] is not None:
            raise ValueError(f"unsupported activation {layer['activation']!r}")
    if not regression:
        builder.add_softmax(name=SOFTMAX_LAYER, input_name=blob, output_name=PROBABILITIES)
        builder.set_class_labels(class_labels, predicted_feature_name=LABEL, prediction_blob=PROBABILITIES)

    builder.make_updatable(updatable_layers)
    with contextlib.redirect_stdout(io.StringIO()):  # coremltools prints a note about the target input
        if regression:
            builder.set_mean_squared_error_loss(name=LOSS_LAYER, input_feature=(output, datatypes.Array(1)))
        else:
            builder.set_categorical_cross_entropy_loss(name=LOSS_LAYER, input=PROBABILITIES)
    if u.optimizer == "sgd":
        params = SgdParams(lr=u.learning_rate, batch=u.mini_batch_size, momentum=u.momentum)
        params.set_lr(u.learning_rate, lr_min, lr_max)
        params.set_batch(u.mini_batch_size, u.batch_set)
        params.set_momentum(u.momentum, *u.momentum_range)
        builder.set_sgd_optimizer(params)
    else:
        params = AdamParams(lr=u.learning_rate, batch=u.mini_batch_size, beta1=u.beta1, beta2=u.beta2, eps=u.eps)
        params.set_lr(u.learning_rate, lr_min, lr_max)
        params.set_batch(u.mini_batch_size, u.batch_set)
        params.set_beta1(u.beta1, 0.0, 1.0)
        params.set_beta2(u.beta2, 0.0, 1.0)
        params.set_eps(u.eps, 0.0, 1.0)
        builder.set_adam_optimizer(params)
    builder.set_epochs(int(u.epochs), allowed_set=u.epochs_set)
    builder.set_shuffle(seed=u.shuffle_seed)

    spec = builder.spec
    desc = spec.description
    desc.metadata.author = "Tandem"
    name = task.name if task is not None else "Tandem"
    what = (f"{name} regressor ({output})" if regression else f"{name} classifier ({', '.join(class_labels)})")
    desc.metadata.shortDescription = (f"{what} over {n_features} features; "
                                      f"updatable on device: {', '.join(updatable_layers)}")
    if version is not None:
        desc.metadata.versionString = str(version)
    for key, value in (metadata or {}).items():
        desc.metadata.userDefined[str(key)] = str(value)
    desc.metadata.userDefined["tandem.updatable_layers"] = ",".join(updatable_layers)
    if feature_names is not None and len(feature_names) == n_features:
        desc.metadata.userDefined["tandem.feature_names"] = ",".join(feature_names)
    input_doc = (f"{n_features} raw (unstandardized) features in feature_spec.json order; "
                 "the model standardizes them")
    if regression:
        unit = getattr(task.target, "unit", "") if task is not None else ""
        target_doc = f"true {output} ({unit})"
        docs = {output: f"predicted {output} ({unit})", f"{output}_true": target_doc}
    else:
        described = task.target.description if task is not None else "the class of the example"
        target_doc = f"true {described}, one of: {', '.join(class_labels)}"
        docs = {PROBABILITIES: "probability of each class", LABEL: "most likely class"}
    for feature in desc.input:
        if feature.name == INPUT_NAME:
            feature.shortDescription = input_doc
    for feature in desc.output:
        feature.shortDescription = docs.get(feature.name, feature.shortDescription)
    for feature in desc.trainingInput:
        if feature.name == INPUT_NAME:
            feature.shortDescription = input_doc
        elif feature.name in (LABEL, f"{output}_true"):
            feature.shortDescription = target_doc
    return spec




def save_mlmodel(spec, path: str | Path | None = None) -> bytes:
    """The serialized .mlmodel; written to `path` too when given."""
    data = spec.SerializeToString()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def load_spec(data: bytes | str | Path):
    """A spec from .mlmodel bytes or a path to a .mlmodel file."""
    from coremltools.proto import Model_pb2

    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    spec = Model_pb2.Model()
    spec.ParseFromString(bytes(data))
    return spec


def _array_shape(feature_type) -> list[int] | None:
    if feature_type.WhichOneof("Type") != "multiArrayType":
        return None
    return [int(s) for s in feature_type.multiArrayType.shape]


def _feature(feature) -> dict:
    kind = feature.type.WhichOneof("Type")
    out = {"name": feature.name, "type": kind}
    if kind == "multiArrayType":
        from coremltools.proto import FeatureTypes_pb2

        out["shape"] = _array_shape(feature.type)
        out["data_type"] = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(
            feature.type.multiArrayType.dataType)
    elif kind == "dictionaryType":
        out["key_type"] = feature.type.dictionaryType.WhichOneof("KeyType")
    if feature.shortDescription:
        out["description"] = feature.shortDescription
    return out


def _range(param) -> dict:
    return {"default": param.defaultValue, "min": param.range.minValue, "max": param.range.maxValue}


def _int_set(param) -> dict:
    return {"default": int(param.defaultValue), "allowed": [int(v) for v in param.set.values]}


def _network(spec):
    kind = spec.WhichOneof("Type")
    if kind not in ("neuralNetworkClassifier", "neuralNetwork", "neuralNetworkRegressor"):
        raise ValueError(f"not a neural network spec: {kind}")
    return getattr(spec, kind)


def describe_updatable(spec) -> dict:
    """The updatable model's interface and update settings, JSON-ready, for the release manifest."""
    nn_spec = _network(spec)
    update = nn_spec.updateParams
    opt_kind = update.optimizer.WhichOneof("OptimizerType")
    optimizer: dict = {"type": {"sgdOptimizer": "sgd", "adamOptimizer": "adam"}.get(opt_kind, opt_kind)}
    if opt_kind == "sgdOptimizer":
        o = update.optimizer.sgdOptimizer
        optimizer.update(learning_rate=_range(o.learningRate), mini_batch_size=_int_set(o.miniBatchSize),
                         momentum=_range(o.momentum))
    elif opt_kind == "adamOptimizer":
        o = update.optimizer.adamOptimizer
        optimizer.update(learning_rate=_range(o.learningRate), mini_batch_size=_int_set(o.miniBatchSize),
                         beta1=_range(o.beta1), beta2=_range(o.beta2), eps=_range(o.eps))
    losses = []
    for loss in update.lossLayers:
        kind = loss.WhichOneof("LossLayerType")
        params = getattr(loss, kind)
        losses.append({"name": loss.name, "type": kind, "input": params.input, "target": params.target})
    labels_kind = nn_spec.WhichOneof("ClassLabels") if spec.HasField("neuralNetworkClassifier") else None
    class_labels = list(getattr(nn_spec, labels_kind).vector) if labels_kind else []
    desc = spec.description
    return {
        "specification_version": int(spec.specificationVersion),
        "is_updatable": bool(spec.isUpdatable),
        "model_type": spec.WhichOneof("Type"),
        "layers": [{"name": layer.name, "type": layer.WhichOneof("layer"), "updatable": bool(layer.isUpdatable)}
                   for layer in nn_spec.layers],
        "updatable_layers": [layer.name for layer in nn_spec.layers if layer.isUpdatable],
        "loss": losses[0] if len(losses) == 1 else losses,
        "optimizer": optimizer,
        "epochs": _int_set(update.epochs),
        "shuffle": bool(update.shuffle.defaultValue),
        "inputs": [_feature(f) for f in desc.input],
        "outputs": [_feature(f) for f in desc.output],
        "training_inputs": [_feature(f) for f in desc.trainingInput],
        "predicted_feature_name": desc.predictedFeatureName,
        "predicted_probabilities_name": desc.predictedProbabilitiesName,
        "class_labels": class_labels,
        "metadata": {
            "author": desc.metadata.author,
            "short_description": desc.metadata.shortDescription,
            "version": desc.metadata.versionString,
            "user_defined": dict(desc.metadata.userDefined),
        },
    }
