"""Core ML's rules for updatable models, checked on the spec before it ships.

A model that breaks one of these loads on the phone but MLUpdateTask refuses it (or Core ML
refuses to compile it), which we would only learn from the field. ``check`` returns every
violation so the release gate can name the broken rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.device.runtime import NN_KINDS, PIPELINE_KINDS, DeviceModel, load_spec, pipeline_models
from tandem.device.update import outside_allowed

RULES = {
    "updatable-flag": "the model is marked isUpdatable",
    "spec-version": "specificationVersion >= 4 (Core ML 3, the first with on-device update)",
    "updatable-network": "an updatable neural network with at least one updatable layer",
    "layer-types": "only innerProduct and convolution layers are updatable",
    "one-loss": "exactly one loss layer",
    "loss-input": "cross-entropy reads a softmax layer's output; MSE reads a blob the network produces",
    "backprop-path": "every layer between an updatable layer and the loss supports backpropagation",
    "target-input": "the training inputs include the loss target",
    "optimizer": "an SGD or Adam optimizer is set",
    "epochs": "the number of epochs is set",
    "float32-weights": "updatable layers hold float32 weights (no fp16, no quantization)",
    "pipeline-last-only": "in a pipeline only the last model is updatable",
    "defaults-allowed": "default update parameters lie within their allowed ranges/sets",
    "knn-index": "an updatable k-NN: squared Euclidean distance, a linear or kd-tree index, k within its allowed range",
    "knn-dimensions": "the k-NN's dimensions are the width of the embedding the stage before it outputs",
}

UPDATABLE_TYPES = {"innerProduct", "convolution"}
BACKPROP_TYPES = {"innerProduct", "convolution", "flatten", "pooling", "batchnorm"}
BACKPROP_ACTIVATIONS = {"ReLU", "sigmoid", "tanh"}


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def _as_spec(model):
    if isinstance(model, DeviceModel):
        return model.spec
    return model if hasattr(model, "WhichOneof") else load_spec(model)


def check(model) -> list[Violation]:
    """All rule violations of an updatable model (spec, DeviceModel, path or bytes); [] = fine."""
    spec = _as_spec(model)
    out: list[Violation] = []
    bad = lambda rule, msg: out.append(Violation(rule, msg))  # noqa: E731
    if not spec.isUpdatable:
        bad("updatable-flag", "spec.isUpdatable is false")
    if spec.specificationVersion < 4:
        bad("spec-version", f"specificationVersion is {spec.specificationVersion}, needs >= 4")
    kind = spec.WhichOneof("Type")
    net_model = spec
    if kind in PIPELINE_KINDS:
        models = pipeline_models(spec)
        if not models:
            bad("updatable-network", "the pipeline has no models")
            return out
        for i, m in enumerate(models[:-1]):
            if m.isUpdatable:
                bad("pipeline-last-only", f"pipeline model {i} ({m.WhichOneof('Type')}) is updatable but not last")
        net_model = models[-1]
        if not net_model.isUpdatable:
            bad("updatable-flag", "the pipeline's last model is not marked isUpdatable")
    if net_model.WhichOneof("Type") == "kNearestNeighborsClassifier":
        _check_knn(spec, models[:-1] if kind in PIPELINE_KINDS else [], net_model, bad)
        return out
    if net_model.WhichOneof("Type") not in NN_KINDS:
        bad("updatable-network", f"the updatable model is a {net_model.WhichOneof('Type')!r}, not a neural network")
        return out
    _check_network(spec, net_model, bad)
    return out


def _check_knn(spec, before, knn_model, bad):
    """A k-NN classifier is updatable by storing rows: no loss or optimizer, but an index Core ML can grow,
    a k it accepts, the label among the training inputs, and inputs as wide as the embedding fed to it."""
    k = knn_model.kNearestNeighborsClassifier
    index = k.nearestNeighborsIndex
    if index.WhichOneof("DistanceFunction") != "squaredEuclideanDistance":
        bad("knn-index", "the distance is not squared Euclidean")
    if index.WhichOneof("IndexType") not in ("linearIndex", "singleKdTreeIndex"):
        bad("knn-index", "no linear or kd-tree index")
    msg = outside_allowed(k.numberOfNeighbors.defaultValue, k.numberOfNeighbors)
    if k.numberOfNeighbors.defaultValue < 1 or msg:
        bad("knn-index", f"number of neighbours {k.numberOfNeighbors.defaultValue} {msg or 'is below 1'}")
    _check_target(spec, spec.description.predictedFeatureName, bad)
    fed = knn_model.description.input[0].name if knn_model.description.input else None
    widths = [list(o.type.multiArrayType.shape) for m in before for o in m.description.output if o.name == fed]
    if before and (not widths or int(np.prod(widths[-1])) != index.numberOfDimensions):
        bad("knn-dimensions", f"the k-NN takes {index.numberOfDimensions} dimensions, the stage before it outputs "
                              f"{fed!r} of shape {widths[-1] if widths else 'none'}")


def _check_network(spec, net_model, bad):
    nn = getattr(net_model, net_model.WhichOneof("Type"))
    layers = list(nn.layers)
    updatable = [l for l in layers if l.isUpdatable]
    if not updatable:
        bad("updatable-network", "no layer is marked isUpdatable")
    for l in updatable:
        kind = l.WhichOneof("layer")
        if kind not in UPDATABLE_TYPES:
            bad("layer-types", f"layer {l.name!r} of type {kind!r} is updatable")
            continue
        p = getattr(l, kind)
        for part in ("weights", "bias"):
            wp = getattr(p, part)
            if len(wp.float16Value):
                bad("float32-weights", f"layer {l.name!r} {part} are float16")
            if wp.HasField("quantization") or len(wp.int8RawValue) or getattr(p, "int8DynamicQuantize", False):
                bad("float32-weights", f"layer {l.name!r} {part} are quantized")
    up = nn.updateParams
    if len(up.lossLayers) != 1:
        bad("one-loss", f"{len(up.lossLayers)} loss layers, needs exactly one")
    else:
        _check_loss(spec, net_model, layers, up.lossLayers[0], bad)
    opt = up.optimizer.WhichOneof("OptimizerType")
    if opt not in ("sgdOptimizer", "adamOptimizer"):
        bad("optimizer", "no SGD or Adam optimizer in updateParams")
    if not up.HasField("epochs") or up.epochs.defaultValue < 1:
        bad("epochs", "updateParams.epochs is not set")
    if opt in ("sgdOptimizer", "adamOptimizer"):
        o = getattr(up.optimizer, opt)
        names = ["learningRate", "miniBatchSize"] + (["momentum"] if opt == "sgdOptimizer" else ["beta1", "beta2", "eps"])
        params = [(n, getattr(o, n)) for n in names] + ([("epochs", up.epochs)] if up.HasField("epochs") else [])
        for name, p in params:
            msg = outside_allowed(p.defaultValue, p)
            if msg:
                bad("defaults-allowed", f"default {name} {msg}")


def _check_loss(spec, net_model, layers, loss, bad):
    kind = loss.WhichOneof("LossLayerType")
    if kind is None:
        bad("one-loss", f"loss layer {loss.name!r} has no type")
        return
    params = getattr(loss, kind)
    producers = {l.output[0]: l for l in layers}
    src = producers.get(params.input)
    ce = kind == "categoricalCrossEntropyLossLayer"
    if ce and (src is None or src.WhichOneof("layer") != "softmax"):
        bad("loss-input", f"cross-entropy input {params.input!r} is not a softmax layer's output")
    if not ce and src is None:
        bad("loss-input", f"MSE input {params.input!r} is not produced by the network")
    # the target: a classifier trains against its predicted-label feature, a regressor against
    # the loss layer's target input
    _check_target(spec, spec.description.predictedFeatureName if ce and spec.description.predictedFeatureName
                  else params.target, bad)
    _check_path(layers, params.input, src if ce else None, bad)


def _check_target(spec, target: str, bad):
    names = {t.name for t in spec.description.trainingInput}
    if target not in names:
        bad("target-input", f"training inputs {sorted(names)} do not include the target {target!r}")


def _check_path(layers, loss_input, ce_softmax, bad):
    """Layers downstream of an updatable layer and upstream of the loss must support backprop."""
    tainted, downstream = set(), set()
    for l in layers:
        if l.isUpdatable or any(i in tainted for i in l.input):
            tainted.update(l.output)
            downstream.add(l.name)
    producers = {o: l for l in layers for o in l.output}
    stack, upstream = [loss_input], set()
    while stack:
        l = producers.get(stack.pop())
        if l is not None and l.name not in upstream:
            upstream.add(l.name)
            stack.extend(l.input)
    for l in layers:
        if l.name not in downstream or l.name not in upstream or l.isUpdatable:
            continue
        kind = l.WhichOneof("layer")
        if kind == "activation":
            act = l.activation.WhichOneof("NonlinearityType")
            if act not in BACKPROP_ACTIVATIONS:
                bad("backprop-path", f"layer {l.name!r}: activation {act!r} does not support backpropagation")
        elif kind == "softmax":
            if ce_softmax is None or l.name != ce_softmax.name:
                bad("backprop-path", f"layer {l.name!r}: softmax is only allowed as the cross-entropy input")
        elif kind not in BACKPROP_TYPES:
            bad("backprop-path", f"layer {l.name!r} of type {kind!r} does not support backpropagation")
