"""On-device update: what Core ML's MLUpdateTask does with an updatable ``.mlmodel``, in numpy.

Reads the loss, optimizer, epochs and shuffle from the spec's ``updateParams``, lets the app
override them inside the allowed ranges/sets, backpropagates through the network and changes only
the parameters flagged ``isUpdatable``. The personal model's weights are stored as float32
``floatValue`` like Core ML writes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tandem.device.runtime import (
    NN_KINDS,
    PIPELINE_KINDS,
    BadInput,
    DeviceModel,
    ModelError,
    UnsupportedLayer,
    batchnorm_scale_shift,
    class_labels_of,
    finite_rows,
    inner_product_params,
    load_spec,
    pipeline_models,
    refuse_non_finite,
    row_list,
    run_model,
    run_network,
    weight_values,
)


class UpdateDiverged(ModelError):
    """An update step left a non-finite weight or loss: the personal model is not produced."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"the update diverged in epoch {epoch}, mini-batch {step} (a weight or the loss became "
                         "non-finite or left float32's range, which Core ML stores weights in)")
        self.epoch, self.step = epoch, step


@dataclass(frozen=True)
class UpdateParams:
    optimizer: str  # "sgd" | "adam"
    learning_rate: float
    mini_batch_size: int
    epochs: int
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    shuffle: bool = True
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class UpdateResult:
    model: DeviceModel  # the personal model
    history: list[float]  # mean training loss per epoch
    params: UpdateParams
    loss_before: float
    loss_after: float
    updated_layers: list[str] = field(default_factory=list)


# ---- where the trainable network is ---------------------------------------------------------

def trainable(spec):
    """(network Model, its NN message, stages before it). In a pipeline only the last model trains."""
    kind = spec.WhichOneof("Type")
    if kind in NN_KINDS:
        return spec, getattr(spec, kind), []
    if kind in PIPELINE_KINDS:
        models = pipeline_models(spec)
        last = models[-1]
        if last.WhichOneof("Type") in NN_KINDS:
            return last, getattr(last, last.WhichOneof("Type")), list(models[:-1])
    raise ModelError(f"no updatable neural network in a {kind!r} model")


# ---- parameters ------------------------------------------------------------------------------

def outside_allowed(value, param) -> str | None:
    """Why ``value`` lies outside an update parameter's allowed range or set (None when inside)."""
    which = param.WhichOneof("AllowedValues")
    if which == "range" and not (param.range.minValue <= value <= param.range.maxValue):
        return f"{value} is outside the allowed range [{param.range.minValue}, {param.range.maxValue}]"
    if which == "set" and value not in set(param.set.values):
        return f"{value} is not in the allowed set {sorted(param.set.values)}"
    return None


def _allowed(name: str, value, param):
    """Raise ValueError naming the parameter when ``value`` lies outside the spec's range/set."""
    why = outside_allowed(value, param)
    if why:
        raise ValueError(f"{name}={why}")
    return value


def _pick(name, override, param, cast):
    value = cast(param.defaultValue) if override is None else cast(override)
    return _allowed(name, value, param) if override is not None else value


def resolve_params(spec, *, epochs=None, learning_rate=None, mini_batch_size=None, momentum=None,
                   beta1=None, beta2=None, eps=None, shuffle=None, seed=None) -> UpdateParams:
    """The spec's defaults with the app's overrides, each checked against the spec's allowed values."""
    _, nn, _ = trainable(spec)
    up = nn.updateParams
    which = up.optimizer.WhichOneof("OptimizerType")
    if which is None or not up.HasField("epochs"):
        raise ModelError("updateParams lacks an optimizer or epochs")
    opt = getattr(up.optimizer, which)
    common = dict(
        learning_rate=_pick("learning_rate", learning_rate, opt.learningRate, float),
        mini_batch_size=_pick("mini_batch_size", mini_batch_size, opt.miniBatchSize, int),
        epochs=_pick("epochs", epochs, up.epochs, int),
        shuffle=bool(up.shuffle.defaultValue) if shuffle is None else bool(shuffle),
        seed=int(up.seed.defaultValue) if seed is None else int(seed),
    )
    if common["mini_batch_size"] < 1 or common["epochs"] < 1:
        raise ValueError("mini_batch_size and epochs must be >= 1")
    if which == "sgdOptimizer":
        return UpdateParams("sgd", momentum=_pick("momentum", momentum, opt.momentum, float), **common)
    if which == "adamOptimizer":
        return UpdateParams("adam", beta1=_pick("beta1", beta1, opt.beta1, float),
                            beta2=_pick("beta2", beta2, opt.beta2, float),
                            eps=_pick("eps", eps, opt.eps, float), **common)
    raise ModelError(f"optimizer {which!r} is not supported")


# ---- backward through one layer --------------------------------------------------------------

def _backward(layer, x, y, g, W=None):
    """dL/dx for one layer given dL/dy (batch-first arrays)."""
    kind = layer.WhichOneof("layer")
    if kind == "innerProduct":
        return (g @ W).reshape(x.shape)
    if kind == "activation":
        a = layer.activation
        act = a.WhichOneof("NonlinearityType")
        if act == "ReLU":
            return g * (x > 0)
        if act == "sigmoid":
            return g * y * (1.0 - y)
        if act == "tanh":
            return g * (1.0 - y * y)
        if act == "linear":
            return g * a.linear.alpha
        if act == "leakyReLU":
            return g * np.where(x > 0, 1.0, a.leakyReLU.alpha)
        raise UnsupportedLayer(layer.name, f"activation/{act}", "no backpropagation")
    if kind == "batchnorm":  # frozen statistics: an affine map
        return g * batchnorm_scale_shift(layer)[0]
    if kind == "flatten":
        return g.reshape(x.shape)
    if kind == "scale":
        return g * weight_values(layer.scale.scale)
    if kind == "bias":
        return g
    if kind == "softmax":
        return y * (g - (g * y).sum(axis=-1, keepdims=True))
    raise UnsupportedLayer(layer.name, kind, "no backpropagation")


class _Trainer:
    """Working float64 copies of the updatable parameters plus forward/backward over the network."""

    def __init__(self, net_model, nn):
        self.nn, self.layers = nn, list(nn.layers)
        up = nn.updateParams
        if len(up.lossLayers) != 1:
            raise ModelError(f"expected exactly one loss layer, found {len(up.lossLayers)}")
        loss = up.lossLayers[0]
        self.loss_kind = loss.WhichOneof("LossLayerType")
        self.loss_input = getattr(loss, self.loss_kind).input
        self.params = {}  # layer name -> [W, b] working copies
        self.trainable = {}  # layer name -> (weights updatable, bias updatable)
        for layer in self.layers:
            if layer.WhichOneof("layer") == "innerProduct":
                W, b = inner_product_params(layer)
                self.params[layer.name] = [W, b]
                if layer.isUpdatable:
                    p = layer.innerProduct
                    self.trainable[layer.name] = (p.weights.isUpdatable, p.hasBias and p.bias.isUpdatable)
            elif layer.isUpdatable:
                raise UnsupportedLayer(layer.name, layer.WhichOneof("layer"), "updating it is not supported")
        if not self.trainable:
            raise ModelError("no updatable layer in the network")
        self.first = min(i for i, l in enumerate(self.layers) if l.name in self.trainable)
        producers = {l.output[0]: l for l in self.layers}
        src = producers.get(self.loss_input)
        if self.loss_kind == "categoricalCrossEntropyLossLayer":
            if src is None or src.WhichOneof("layer") != "softmax":
                raise ModelError("cross-entropy loss must read a softmax layer's output")
            self.ce_softmax = src  # CE+softmax backprop as one step: (p - t) / n
        else:
            self.ce_softmax = None

    def forward(self, x_in: dict) -> dict:
        return run_network(self.nn, x_in, {k: tuple(v) for k, v in self.params.items()})

    def loss(self, out, t) -> float:
        p = out[self.loss_input].reshape(len(t), -1)
        if self.ce_softmax is not None:  # t: class indices
            return float(-np.mean(np.log(np.clip(p[np.arange(len(t)), t], 1e-300, None))))
        return float(np.mean((p - t) ** 2))

    def gradients(self, blobs, t) -> dict:
        n = len(t)
        p = blobs[self.loss_input].reshape(n, -1)
        grads = {}
        if self.ce_softmax is not None:
            onehot = np.zeros_like(p)
            onehot[np.arange(n), t] = 1.0
            grads[self.ce_softmax.input[0]] = (p - onehot) / n
        else:  # mean over batch and outputs
            grads[self.loss_input] = 2.0 * (p - t) / p.size
        out = {}
        for i in range(len(self.layers) - 1, self.first - 1, -1):
            layer = self.layers[i]
            if layer is self.ce_softmax or layer.output[0] not in grads:
                continue
            g = grads[layer.output[0]]
            x = blobs[layer.input[0]]
            W = self.params[layer.name][0] if layer.name in self.params else None
            if layer.name in self.trainable:
                x2 = x.reshape(n, -1)
                out[layer.name] = (g.T @ x2, g.sum(axis=0))
            if i > self.first:  # earlier layers never need their input gradient
                dx = _backward(layer, x, blobs[layer.output[0]], g, W)
                grads[layer.input[0]] = grads.get(layer.input[0], 0.0) + dx
        return out


class _Optimizer:
    def __init__(self, p: UpdateParams):
        self.p, self.t, self.state = p, 0, {}

    def step(self, params: dict, grads: dict, trainable: dict):
        self.t += 1
        p = self.p
        for name, (gW, gb) in grads.items():
            for j, (g, on) in enumerate(zip((gW, gb), trainable[name])):
                if not on:
                    continue
                key = (name, j)
                if p.optimizer == "sgd":
                    v = self.state.get(key, 0.0) * p.momentum + g
                    self.state[key] = v
                    params[name][j] = params[name][j] - p.learning_rate * v
                else:
                    m, s = self.state.get(key, (0.0, 0.0))
                    m = p.beta1 * m + (1 - p.beta1) * g
                    s = p.beta2 * s + (1 - p.beta2) * g * g
                    self.state[key] = (m, s)
                    mh, sh = m / (1 - p.beta1 ** self.t), s / (1 - p.beta2 ** self.t)
                    params[name][j] = params[name][j] - p.learning_rate * mh / (np.sqrt(sh) + p.eps)


# ---- data ------------------------------------------------------------------------------------

def _network_inputs(spec, net_model, stages, X) -> dict:
    """Model inputs -> the network's inputs (running non-updatable pipeline stages first)."""
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(1, -1) if X.ndim == 1 else X if X.ndim == 2 else X.reshape(len(X), -1)
    feats = {spec.description.input[0].name: X}
    for stage in stages:
        feats = run_model(stage, feats)
    name = net_model.description.input[0].name
    return {name: feats[name]}


def _targets(net_model, nn, y) -> np.ndarray:
    if net_model.WhichOneof("Type") == "neuralNetworkClassifier":
        labels = class_labels_of(nn)
        index = {lab: i for i, lab in enumerate(labels)}
        try:
            return np.asarray([index[v if not isinstance(v, np.generic) else v.item()] for v in y], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"label {e.args[0]!r} is not one of the model's class labels {labels}") from None
    t = np.asarray(y, dtype=np.float64)
    return t.reshape(len(t), -1) if len(t) else t.reshape(0, 1)


def _prepare(model, X, y):
    model = DeviceModel.load(model)
    spec = load_spec(model.spec)  # a private copy: the personal model must not alias the base
    net_model, nn, stages = trainable(spec)
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1) if len(X) else np.zeros((0, model.input_dim or 0))
    refuse_non_finite(X)  # before any row reaches a forward pass or a gradient
    inputs = _network_inputs(spec, net_model, stages, X)
    t = _targets(net_model, nn, y)
    if len(t) != len(next(iter(inputs.values()))):
        raise ValueError("X and y have different lengths")
    if t.dtype.kind == "f":
        refuse_non_finite(t, "targets")
    return spec, net_model, nn, inputs, t


def _refuse_overflow(tr: "_Trainer", inputs: dict, n: int) -> None:
    """Rows of finite features so large that the base's outputs are not finite (1e308) are refused."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = tr.forward(inputs)[tr.loss_input].reshape(n, -1)
    bad = ~finite_rows(out)
    if bad.any():
        raise BadInput(f"{int(bad.sum())} of {n} feature vectors drive the model to non-finite outputs "
                       f"(rows {row_list(bad)}): refused; their values are far outside what it was trained on")


def evaluate_loss(model, X, y) -> float:
    """The spec's loss (mean over samples) at the model's current weights."""
    spec, net_model, nn, inputs, t = _prepare(model, X, y)
    tr = _Trainer(net_model, nn)
    return tr.loss(tr.forward(inputs), t)


def update(model, X, y, on_epoch=None, **overrides) -> UpdateResult:
    """Personalize ``model`` on (X, y) like MLUpdateTask; overrides: epochs, learning_rate,
    mini_batch_size, momentum, beta1, beta2, eps, shuffle, seed. ``on_epoch(epoch, predict_proba)``
    is the progress handler at each epoch's end (1-based; predict_proba: the current model on
    feature rows); returning True cancels the task, as ``context.task.cancel()`` does."""
    spec, net_model, nn, inputs, t = _prepare(model, X, y)
    params = resolve_params(spec, **overrides)
    if len(t) == 0:  # nothing to learn from: a no-op, the base comes back unchanged
        base = DeviceModel.load(model)
        return UpdateResult(DeviceModel.load(base.to_bytes()), [], params, float("nan"), float("nan"), [])
    tr = _Trainer(net_model, nn)
    _refuse_overflow(tr, inputs, len(t))
    loss_before = tr.loss(tr.forward(inputs), t)
    opt = _Optimizer(params)
    rng = np.random.default_rng(params.seed)
    (name, x_all), = inputs.items()
    n, history = len(t), []
    for epoch in range(1, params.epochs + 1):
        order = rng.permutation(n) if params.shuffle else np.arange(n)
        total = 0.0
        for step, start in enumerate(range(0, n, params.mini_batch_size), 1):  # the last, smaller batch is used too
            idx = order[start:start + params.mini_batch_size]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                blobs = tr.forward({name: x_all[idx]})
                loss = tr.loss(blobs, t[idx])
                opt.step(tr.params, tr.gradients(blobs, t[idx]), tr.trainable)
            if not np.isfinite(loss) or not _weights_finite(tr):  # checked after every step
                raise UpdateDiverged(epoch, step)
            total += loss * len(idx)
        history.append(total / n)
        if on_epoch is not None and on_epoch(len(history), _current_proba(spec, net_model, trainable(spec)[2], nn, tr)):
            break
    _write_back(nn, tr)
    stored = _Trainer(net_model, nn)  # the float32 weights as saved, not the float64 working copy
    loss_after = stored.loss(stored.forward(inputs), t)
    return UpdateResult(DeviceModel(spec), history, params, loss_before, loss_after, sorted(tr.trainable))


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _weights_finite(tr: "_Trainer") -> bool:
    """Every updatable weight finite and storable as float32 (Core ML's weight type)."""
    return all(np.isfinite(v).all() and np.abs(v).max(initial=0.0) <= FLOAT32_MAX
               for name in tr.trainable for v in tr.params[name] if v is not None)


def _current_proba(spec, net_model, stages, nn, tr: _Trainer):
    """The model as it stands mid-task: class probabilities of feature rows (classifier order)."""
    def predict_proba(X):
        blobs = tr.forward(_network_inputs(spec, net_model, stages, X))
        return blobs[tr.loss_input].reshape(len(np.atleast_2d(X)), -1)
    return predict_proba


def _write_back(nn, tr: _Trainer):
    """Store the trained parameters as float32 floatValue, as Core ML writes an updated model."""
    for layer in nn.layers:
        if layer.name not in tr.trainable:
            continue
        W, b = tr.params[layer.name]
        on_w, on_b = tr.trainable[layer.name]
        p = layer.innerProduct
        for wp, value, on in ((p.weights, W, on_w), (p.bias, b, on_b)):
            if on:
                del wp.floatValue[:]
                wp.floatValue.extend(np.asarray(value, dtype=np.float32).ravel().tolist())


def updatable_weights(model) -> dict[str, dict]:
    """{layer: {"weights": (out, in) array, "bias": array|None}} for the updatable layers."""
    spec = DeviceModel.load(model).spec
    _, nn, _ = trainable(spec)
    out = {}
    for layer in nn.layers:
        if layer.isUpdatable and layer.WhichOneof("layer") == "innerProduct":
            W, b = inner_product_params(layer)
            out[layer.name] = {"weights": W, "bias": b}
    return out
