"""Run a Core ML ``.mlmodel`` (NeuralNetwork specs, Scaler stages, pipelines) in numpy float64.

This is what the phone does with the published model. coremltools cannot predict on Linux, so
parity with the trainer and the on-device update are checked against this interpreter. It imports
only numpy and protobuf (the vendored Core ML messages), like an app would carry no torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tandem.device import knn_stage
from tandem.device.proto import Model_pb2

NN_KINDS = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")
PIPELINE_KINDS = ("pipeline", "pipelineClassifier", "pipelineRegressor")
CLASSIFIER_KINDS = ("neuralNetworkClassifier", "pipelineClassifier")


class ModelError(ValueError):
    """The spec cannot be run by the device runtime."""


class BadInput(ValueError):
    """Feature rows a model must not see: NaN, infinities, or values that overflow the network."""


def finite_rows(X) -> np.ndarray:
    """Mask of the rows of a 2-D float array holding only finite values."""
    X = np.asarray(X, dtype=np.float64)
    return np.isfinite(X.reshape(len(X), -1)).all(axis=1) if len(X) else np.zeros(0, bool)


def row_list(mask: np.ndarray, limit: int = 5) -> str:
    """The indices where ``mask`` is True, shortened for a one-line message."""
    rows = np.flatnonzero(mask)
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")


def refuse_non_finite(X, what: str = "feature vectors") -> None:
    """BadInput with a count when any row holds NaN or an infinity (checked before any model sees it)."""
    bad = ~finite_rows(X)
    if bad.any():
        raise BadInput(f"{int(bad.sum())} of {len(bad)} {what} hold NaN or infinite values (rows {row_list(bad)}): "
                       "refused; drop them or fix the featurizer's input")


class UnsupportedLayer(ModelError):
    def __init__(self, name: str, kind: str | None, detail: str = "not supported by the device runtime"):
        super().__init__(f"layer {name!r} of type {kind!r}: {detail}")
        self.layer_name, self.layer_type = name, kind


def load_spec(src) -> Model_pb2.Model:
    """A Model message from a path, raw bytes or another Model message (copied)."""
    spec = Model_pb2.Model()
    if isinstance(src, (bytes, bytearray, memoryview)):
        spec.ParseFromString(bytes(src))
    elif isinstance(src, (str, Path)):
        spec.ParseFromString(Path(src).read_bytes())
    elif hasattr(src, "SerializeToString"):  # a Model message, possibly coremltools' own class
        spec.ParseFromString(src.SerializeToString())
    else:
        raise TypeError(f"cannot load a Core ML spec from {type(src).__name__}")
    return spec


def weight_values(wp, what: str = "weights") -> np.ndarray:
    """WeightParams -> float64 vector. Quantized weights are refused (not produced by Tandem)."""
    if wp.HasField("quantization") or len(wp.int8RawValue):
        raise ModelError(f"{what}: quantized weights are not supported")
    if len(wp.floatValue):
        return np.asarray(wp.floatValue, dtype=np.float64)
    if len(wp.float16Value):
        return np.frombuffer(wp.float16Value, dtype="<f2").astype(np.float64)
    if len(wp.rawValue):
        return np.frombuffer(wp.rawValue, dtype="<f4").astype(np.float64)
    return np.zeros(0)


def inner_product_params(layer) -> tuple[np.ndarray, np.ndarray | None]:
    p = layer.innerProduct
    if p.int8DynamicQuantize:
        raise UnsupportedLayer(layer.name, "innerProduct", "int8 dynamic quantization is not supported")
    W = weight_values(p.weights, f"{layer.name}.weights").reshape(p.outputChannels, p.inputChannels)
    b = weight_values(p.bias, f"{layer.name}.bias") if p.hasBias else None
    return W, b


# ---- layer forwards: each takes the layer message and a (n, ...) batch -------------------------

def _inner_product(layer, x, params=None):
    W, b = params if params is not None else inner_product_params(layer)
    x = x.reshape(len(x), -1)
    if x.shape[1] != W.shape[1]:
        raise ModelError(f"layer {layer.name!r}: expects {W.shape[1]} inputs, got {x.shape[1]}")
    y = x @ W.T
    return y + b if b is not None else y


def _activation(layer, x, params=None):
    a = layer.activation
    kind = a.WhichOneof("NonlinearityType")
    if kind == "ReLU":
        return np.maximum(x, 0.0)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "linear":
        return a.linear.alpha * x + a.linear.beta
    if kind == "leakyReLU":
        return np.where(x > 0, x, a.leakyReLU.alpha * x)
    raise UnsupportedLayer(layer.name, f"activation/{kind}")


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)  # shift for overflow safety; softmax is shift-invariant
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax(layer, x, params=None):
    return softmax(x)


def batchnorm_scale_shift(layer) -> tuple[np.ndarray, np.ndarray]:
    """Inference batchnorm as y = x * s + t (statistics frozen in the spec)."""
    p = layer.batchnorm
    if p.computeMeanVar or p.instanceNormalization:
        raise UnsupportedLayer(layer.name, "batchnorm", "computeMeanVar/instanceNormalization not supported")
    gamma, beta = weight_values(p.gamma), weight_values(p.beta)
    mean, var = weight_values(p.mean), weight_values(p.variance)
    s = gamma / np.sqrt(var + p.epsilon)
    return s, beta - mean * s


def _batchnorm(layer, x, params=None):
    s, t = batchnorm_scale_shift(layer)
    return x * s + t


def _scale(layer, x, params=None):
    p = layer.scale
    y = x * weight_values(p.scale)  # shape [C] or [1] broadcasts over the channel axis of a (n, C) batch
    return y + weight_values(p.bias) if p.hasBias else y


def _bias(layer, x, params=None):
    return x + weight_values(layer.bias.bias)


def _flatten(layer, x, params=None):
    return x.reshape(len(x), -1)


FORWARD = {
    "innerProduct": _inner_product,
    "activation": _activation,
    "softmax": _softmax,
    "batchnorm": _batchnorm,
    "scale": _scale,
    "bias": _bias,
    "flatten": _flatten,
}


def layer_forward(layer, x: np.ndarray, params=None) -> np.ndarray:
    kind = layer.WhichOneof("layer")
    fn = FORWARD.get(kind)
    if fn is None:
        raise UnsupportedLayer(layer.name, kind)
    if len(layer.input) != 1 or len(layer.output) != 1:
        raise UnsupportedLayer(layer.name, kind, "only single-input, single-output layers are supported")
    return fn(layer, x, params)


def run_network(nn, blobs: dict[str, np.ndarray], params: dict | None = None) -> dict[str, np.ndarray]:
    """Run the layers in spec order (Core ML requires topological order). ``params`` overrides
    innerProduct (W, b) by layer name, which is how the trainer runs with its working weights."""
    blobs = dict(blobs)
    for layer in nn.layers:
        if layer.input[0] not in blobs:
            raise ModelError(f"layer {layer.name!r}: input blob {layer.input[0]!r} is not produced before it")
        p = params.get(layer.name) if params else None
        blobs[layer.output[0]] = layer_forward(layer, blobs[layer.input[0]], p)
    return blobs


def probability_blob(nn) -> str:
    """Where a NeuralNetworkClassifier's probability vector is: labelProbabilityLayerName, else the
    last layer's output."""
    name = nn.labelProbabilityLayerName
    if name:
        for layer in nn.layers:
            if name in (layer.name, layer.output[0]):
                return layer.output[0]
    return nn.layers[-1].output[0]


def class_labels_of(nn) -> list:
    which = nn.WhichOneof("ClassLabels")
    if which == "stringClassLabels":
        return list(nn.stringClassLabels.vector)
    if which == "int64ClassLabels":
        return list(nn.int64ClassLabels.vector)
    raise ModelError("classifier has no class labels")


def pipeline_models(spec) -> list:
    """The stages of a pipeline spec (plain, classifier or regressor pipeline), in order."""
    kind = spec.WhichOneof("Type")
    if kind not in PIPELINE_KINDS:
        raise ModelError(f"model type {kind!r} is not a pipeline")
    return list((getattr(spec, kind) if kind == "pipeline" else getattr(spec, kind).pipeline).models)


def run_model(spec, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one Model (any supported kind) on batched features; returns features plus its outputs.
    Classifier probabilities are returned as (n, k) arrays in class-label order, not dicts."""
    kind = spec.WhichOneof("Type")
    out = dict(features)
    if kind in PIPELINE_KINDS:
        for stage in pipeline_models(spec):
            out.update(run_model(stage, out))
        return out
    if kind == "scaler":
        src, dst = spec.description.input[0].name, spec.description.output[0].name
        x = out[src]
        shift = np.asarray(spec.scaler.shiftValue, dtype=np.float64)
        scale = np.asarray(spec.scaler.scaleValue, dtype=np.float64)
        out[dst] = (x + (shift if len(shift) else 0.0)) * (scale if len(scale) else 1.0)
        return out
    if kind == "kNearestNeighborsClassifier":
        desc = spec.description
        try:
            labels, probs = knn_stage.knn_forward(spec, out[desc.input[0].name])
        except knn_stage.KnnError as e:
            raise ModelError(str(e)) from None
        out[desc.predictedFeatureName or "classLabel"] = labels
        out[desc.predictedProbabilitiesName or "classProbability"] = probs
        return out
    if kind not in NN_KINDS:
        raise ModelError(f"model type {kind!r} is not supported by the device runtime")
    nn = getattr(spec, kind)
    blobs = run_network(nn, out)
    if kind == "neuralNetworkClassifier":
        probs = blobs[probability_blob(nn)].reshape(len(blobs[probability_blob(nn)]), -1)
        labels = np.asarray(class_labels_of(nn), dtype=object)
        desc = spec.description
        out[desc.predictedProbabilitiesName or "classProbability"] = probs
        out[desc.predictedFeatureName or "classLabel"] = labels[probs.argmax(axis=1)]
    for o in spec.description.output:
        if o.name in blobs and o.name not in out:
            out[o.name] = blobs[o.name]
    return out


def _classifier_network(spec):
    """The NeuralNetworkClassifier inside a spec (itself, or the last classifier in a pipeline)."""
    kind = spec.WhichOneof("Type")
    if kind == "neuralNetworkClassifier":
        return spec.neuralNetworkClassifier
    if kind in PIPELINE_KINDS:
        for stage in reversed(pipeline_models(spec)):
            found = _classifier_network(stage)
            if found is not None:
                return found
    return None


class DeviceModel:
    """A loaded ``.mlmodel`` the way the app holds it: spec in, predictions out."""

    def __init__(self, spec, raw: bytes | None = None):
        self.spec = spec
        self._raw = raw  # the exact bytes it was loaded from, so sha256 matches the published file

    @classmethod
    def load(cls, src) -> "DeviceModel":
        if isinstance(src, DeviceModel):
            return cls(load_spec(src.spec), src._raw)
        raw = bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else None
        if isinstance(src, (str, Path)):
            raw = Path(src).read_bytes()
        spec = load_spec(raw if raw is not None else src)
        if spec.WhichOneof("Type") is None:
            raise ModelError("not a Core ML model (no model type in the spec)")
        return cls(spec, raw)

    # ---- identity ----
    def to_bytes(self) -> bytes:
        return self._raw if self._raw is not None else self.spec.SerializeToString(deterministic=True)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        return path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def kind(self) -> str:
        return self.spec.WhichOneof("Type")

    @property
    def input_name(self) -> str:
        return self.spec.description.input[0].name

    @property
    def input_dim(self) -> int | None:
        shape = list(self.spec.description.input[0].type.multiArrayType.shape)
        return int(np.prod(shape)) if shape else None

    @property
    def is_classifier(self) -> bool:
        return self.kind in CLASSIFIER_KINDS

    @property
    def class_labels(self) -> list | None:
        if not self.is_classifier:
            return None
        stage = knn_stage.last_knn_stage(self.spec)
        if stage is not None:
            return knn_stage.class_labels(stage)
        nn = _classifier_network(self.spec)
        return class_labels_of(nn) if nn is not None else None

    @property
    def label_name(self) -> str:
        return self.spec.description.predictedFeatureName

    @property
    def probabilities_name(self) -> str:
        return self.spec.description.predictedProbabilitiesName

    # ---- prediction ----
    def _batch(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            return X.reshape(1, -1)
        return X.reshape(len(X), -1) if len(X) else X.reshape(0, self.input_dim or (X.shape[1] if X.ndim > 1 else 0))

    def outputs(self, X) -> dict[str, np.ndarray]:
        """Every output for rows of finite features; a NaN/inf row, or one so large that the network
        overflows on it (1e308), is refused with a count rather than turned into NaN predictions."""
        X = self._batch(X)
        refuse_non_finite(X)
        with np.errstate(over="ignore", invalid="ignore"):
            out = run_model(self.spec, {self.input_name: X})
        produced = [v for k, v in out.items() if k != self.input_name and v.dtype.kind == "f" and len(v) == len(X)]
        bad = np.zeros(len(X), bool)
        for v in produced:
            bad |= ~finite_rows(v)
        if bad.any():
            raise BadInput(f"{int(bad.sum())} of {len(X)} feature vectors drive the model to non-finite outputs "
                           f"(rows {row_list(bad)}): refused; their values are far outside what it was trained on")
        return out

    def usable_rows(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(non-finite rows, rows the network overflows on): masks of the rows to skip, for callers
        that skip with a count instead of refusing the whole input."""
        X = self._batch(X)
        non_finite = ~finite_rows(X)
        overflow = np.zeros(len(X), bool)
        if (~non_finite).any():
            with np.errstate(over="ignore", invalid="ignore"):
                out = run_model(self.spec, {self.input_name: np.where(non_finite[:, None], 0.0, X)})
            for k, v in out.items():
                if k != self.input_name and v.dtype.kind == "f" and len(v) == len(X):
                    overflow |= ~finite_rows(v)
        return non_finite, overflow & ~non_finite

    def predict_proba(self, X) -> np.ndarray:
        if not self.is_classifier:
            raise ModelError(f"{self.kind} is not a classifier")
        out, name = self.outputs(X), self.probabilities_name or "classProbability"
        if name not in out:  # e.g. a pipeline whose last stage names its probabilities differently
            raise ModelError(f"no model stage produces the probabilities output {name!r}")
        return out[name]

    def predict(self, X) -> np.ndarray:
        """Labels for a classifier; the output array(s) for a regressor ((n,) for one output)."""
        out = self.outputs(X)
        if self.is_classifier:
            return out[self.label_name or "classLabel"]
        y = out[self.spec.description.output[0].name]
        return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y

    def predict_one(self, x) -> dict:
        """What MLModel.prediction gives the app for one input: label and probability dict."""
        p = self.predict_proba(x)[0]
        labels = self.class_labels
        return {"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist())), "vector": p}
