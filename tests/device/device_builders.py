"""Specs built the way Tandem builds them (coremltools' NeuralNetworkBuilder), for the device tests.

Tests may import coremltools; the device runtime never does.
"""

from __future__ import annotations

import warnings

import numpy as np

from tandem import task as tasks
from tandem.contract import features

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import coremltools as ct  # noqa: F401
    from coremltools.models import datatypes
    from coremltools.models.neural_network import (
        AdamParams,
        NeuralNetworkBuilder,
        SgdParams,
    )

LABELS = ["walking", "upstairs", "downstairs", "sitting", "standing", "lying"]
FEATURE_NAMES = features.of(tasks.resolve("har")).feature_names  # HAR's, as the demo app computes them
D = len(FEATURE_NAMES)  # the feature vector the app computes


def random_weights(seed=0, d=D, hidden=(32, 16), k=6):
    rng = np.random.default_rng(seed)
    sizes = (d, *hidden, k)
    ws = [rng.normal(0, 1 / np.sqrt(i), size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.1, size=o) for o in sizes[1:]]
    mean = rng.normal(0, 2, size=d)
    std = rng.uniform(0.5, 3, size=d)
    return dict(ws=ws, bs=bs, mean=mean, std=std)


def _network(builder, w, in_name, out_name, softmax=True):
    d = w["ws"][0].shape[1]
    builder.add_batchnorm(
        name="standardize", channels=d, gamma=1 / w["std"], beta=-w["mean"] / w["std"],
        mean=np.zeros(d), variance=np.ones(d), input_name=in_name, output_name="z", epsilon=0.0,
    )
    blob = "z"
    n = len(w["ws"])
    for i, (W, b) in enumerate(zip(w["ws"], w["bs"])):
        name = f"dense{i}" if i < n - 1 else "head"
        out = f"{name}_out"
        builder.add_inner_product(name=name, W=W, b=b, input_channels=W.shape[1], output_channels=W.shape[0],
                                  has_bias=True, input_name=blob, output_name=out)
        blob = out
        if i < n - 1:
            builder.add_activation(name=f"{name}.relu", non_linearity="RELU", input_name=blob, output_name=f"{name}_relu")
            blob = f"{name}_relu"
    if softmax:
        builder.add_softmax(name="softmax", input_name=blob, output_name=out_name)
    return blob


def classifier_builder(w=None, updatable=("head",), optimizer="sgd", epochs=5, epochs_set=(1, 2, 3, 5, 10, 20),
                       lr=0.05, batch=8, batch_set=(4, 8, 16, 32)):
    w = w or random_weights()
    d, k = w["ws"][0].shape[1], w["ws"][-1].shape[0]
    builder = NeuralNetworkBuilder([("features", datatypes.Array(d))], [("probs", datatypes.Array(k))],
                                   mode="classifier", disable_rank5_shape_mapping=True)
    _network(builder, w, "features", "probs")
    builder.set_class_labels(LABELS[:k], predicted_feature_name="label", prediction_blob="probs")
    if updatable:
        _make_updatable(builder, updatable, "probs", optimizer, epochs, epochs_set, lr, batch, batch_set)
    return builder


def _make_updatable(builder, updatable, loss_input, optimizer, epochs, epochs_set, lr, batch, batch_set, mse=False):
    builder.make_updatable(list(updatable))
    if mse:
        builder.set_mean_squared_error_loss(name="loss", input_feature=("output", datatypes.Array(1)))
    else:
        builder.set_categorical_cross_entropy_loss(name="loss", input=loss_input)
    if optimizer == "sgd":
        p = SgdParams(lr=lr, batch=batch, momentum=0.0)
        p.set_lr(lr, 1e-5, 1.0)
        p.set_batch(batch, list(batch_set))
        p.set_momentum(0.0, 0.0, 1.0)
        builder.set_sgd_optimizer(p)
    else:
        p = AdamParams(lr=lr, batch=batch)
        p.set_lr(lr, 1e-5, 1.0)
        p.set_batch(batch, list(batch_set))
        builder.set_adam_optimizer(p)
    builder.set_epochs(epochs, allowed_set=list(epochs_set))
    builder.set_shuffle(seed=7)


def classifier_spec(**kw):
    return classifier_builder(**kw).spec


def regressor_spec(seed=0, optimizer="sgd", lr=0.01):
    w = random_weights(seed, d=5, hidden=(8,), k=1)
    builder = NeuralNetworkBuilder([("features", datatypes.Array(5))], [("output", datatypes.Array(1))],
                                   mode="regressor", disable_rank5_shape_mapping=True)
    blob = "features"
    W, b = w["ws"][0], w["bs"][0]
    builder.add_inner_product(name="dense0", W=W, b=b, input_channels=5, output_channels=8, has_bias=True,
                              input_name=blob, output_name="h")
    builder.add_activation(name="dense0.tanh", non_linearity="TANH", input_name="h", output_name="ht")
    builder.add_inner_product(name="head", W=w["ws"][1], b=w["bs"][1], input_channels=8, output_channels=1,
                              has_bias=True, input_name="ht", output_name="output")
    _make_updatable(builder, ["dense0", "head"], None, optimizer, 10, (1, 5, 10, 20, 50), lr, 8, (4, 8, 16), mse=True)
    return builder.spec


def pipeline_spec(seed=0):
    """Scaler stage (not updatable) then the updatable classifier, like Tandem's pipeline export."""
    from coremltools.models.pipeline import PipelineClassifier
    from coremltools.proto import Model_pb2

    w = random_weights(seed)
    d = w["ws"][0].shape[1]
    scaler = Model_pb2.Model()
    scaler.specificationVersion = 4
    scaler.scaler.shiftValue.extend(list(-w["mean"]))
    scaler.scaler.scaleValue.extend(list(1 / w["std"]))
    inp = scaler.description.input.add()
    inp.name = "features"
    inp.type.multiArrayType.shape.append(d)
    inp.type.multiArrayType.dataType = Model_pb2.FeatureTypes__pb2.ArrayFeatureType.DOUBLE
    out = scaler.description.output.add()
    out.name = "scaled"
    out.type.multiArrayType.shape.append(d)
    out.type.multiArrayType.dataType = Model_pb2.FeatureTypes__pb2.ArrayFeatureType.DOUBLE
    # classifier without its own standardization: identity batchnorm
    w2 = dict(w, mean=np.zeros(d), std=np.ones(d))
    clf = classifier_builder(w2, updatable=("head",))
    clf.spec.description.input[0].name = "scaled"
    clf.spec.neuralNetworkClassifier.layers[0].input[0] = "scaled"
    clf.spec.description.trainingInput[0].name = "scaled"
    clf.spec.description.output[0].name = "labelProbability"  # pipeline outputs are matched by name
    clf.spec.description.predictedProbabilitiesName = "labelProbability"
    pipe = PipelineClassifier([("features", datatypes.Array(d))], LABELS, output_features=[
        ("label", datatypes.String()), ("labelProbability", datatypes.Dictionary(datatypes.String()))])
    pipe.add_model(scaler)
    pipe.add_model(clf.spec)
    pipe.make_updatable()
    pipe.set_training_input([("features", datatypes.Array(d)), ("label", datatypes.String())])
    pipe.spec.specificationVersion = 4
    return pipe.spec, w
