"""The k-nearest-neighbours personal model: Core ML's native route for few-label personalization.

A released network's layers up to its head become a frozen embedding, followed by an updatable
``KNearestNeighborsClassifier`` whose index starts empty; Core ML's MLUpdateTask on this pipeline
stores each labelled row's embedding (no gradient, no epochs). The pipeline is derived from the
released ``.mlmodel`` alone (``knn_pipeline``), so the server ships it beside the network and the
device runtime can rebuild it byte for byte. numpy + protobuf only, like the rest of `tandem.device`.

How the k-NN stage predicts: `tandem.device.knn_stage` (the runtime runs it inside the pipeline).
"""

from __future__ import annotations

import json

import numpy as np

from tandem.device.knn_stage import CLASS_LABELS_KEY, class_labels, last_knn_stage, samples
from tandem.device.proto import Model_pb2
from tandem.device.runtime import DeviceModel, ModelError, load_spec, run_network

EMBEDDING = "embedding"
HEAD = "head"  # the layer the embedding feeds: Tandem's export names its last dense layer so
PERSONAL_KEY = "tandem.personal"
BASE_SHA_KEY = "tandem.base_sha256"
MIN_UPDATABLE_SPEC = 4
MAX_NEIGHBORS = 1000


def knn_pipeline(base, neighbors: int) -> DeviceModel:
    """The updatable k-NN pipeline of a released classifier network (DeviceModel, bytes or path): its
    layers before "head" as a plain network whose output is the embedding, then an empty updatable
    k-NN classifier with `neighbors` neighbours (the default label: the first class)."""
    base = DeviceModel.load(base)
    if base.kind != "neuralNetworkClassifier":
        raise ModelError(f"a k-NN personal model needs a released neural network classifier, not {base.kind!r}")
    if not 1 <= int(neighbors) <= MAX_NEIGHBORS:
        raise ValueError(f"neighbors must be within 1..{MAX_NEIGHBORS}, got {neighbors}")
    nn = base.spec.neuralNetworkClassifier
    names = [layer.name for layer in nn.layers]
    if HEAD not in names:
        raise ModelError(f"the network has no layer named {HEAD!r} (layers: {', '.join(names)}): not a Tandem export")
    head = nn.layers[names.index(HEAD)]
    width = int(head.innerProduct.inputChannels)
    labels = [str(c) for c in base.class_labels]
    desc = base.spec.description
    features = next(f for f in desc.input if f.name == base.input_name)

    pipe = Model_pb2.Model()
    pipe.specificationVersion = max(MIN_UPDATABLE_SPEC, base.spec.specificationVersion)
    pipe.isUpdatable = True
    _describe(pipe.description, features, labels, base, neighbors)

    embed = pipe.pipelineClassifier.pipeline.models.add()
    embed.specificationVersion = pipe.specificationVersion
    embed.description.input.add().CopyFrom(features)
    out = embed.description.output.add()
    out.name = EMBEDDING
    out.type.multiArrayType.shape.append(width)
    out.type.multiArrayType.dataType = features.type.multiArrayType.dataType
    layers = list(nn.layers[:names.index(HEAD)])
    if not layers or head.input[0] != layers[-1].output[0]:
        raise ModelError(f"layer {HEAD!r} does not read the output of the layer before it: not a Tandem export")
    for layer in layers:
        embed.neuralNetwork.layers.add().CopyFrom(layer)
    embed.neuralNetwork.layers[-1].output[0] = EMBEDDING

    knn_stage = pipe.pipelineClassifier.pipeline.models.add()
    knn_stage.specificationVersion = pipe.specificationVersion
    knn_stage.isUpdatable = True
    _describe(knn_stage.description, out, labels, base, neighbors)
    k = knn_stage.kNearestNeighborsClassifier
    k.nearestNeighborsIndex.numberOfDimensions = width
    k.nearestNeighborsIndex.linearIndex.SetInParent()
    k.nearestNeighborsIndex.squaredEuclideanDistance.SetInParent()
    k.numberOfNeighbors.defaultValue = int(neighbors)
    k.numberOfNeighbors.range.minValue, k.numberOfNeighbors.range.maxValue = 1, MAX_NEIGHBORS
    k.stringClassLabels.SetInParent()
    k.defaultStringLabel = labels[0]
    k.uniformWeighting.SetInParent()
    return DeviceModel.load(pipe.SerializeToString(deterministic=True))


def _describe(desc, feature, labels, base: DeviceModel, neighbors: int) -> None:
    """`feature` as the input, the label and probability outputs the released network has (the app reads both
    models alike), training inputs (`feature` and the label), and where the pipeline came from."""
    desc.input.add().CopyFrom(feature)
    label = desc.output.add()
    label.name = base.label_name or "label"
    label.type.stringType.SetInParent()
    probs = desc.output.add()
    probs.name = base.probabilities_name or "labelProbability"
    probs.type.dictionaryType.stringKeyType.SetInParent()
    desc.predictedFeatureName, desc.predictedProbabilitiesName = label.name, probs.name
    desc.trainingInput.add().CopyFrom(feature)
    target = desc.trainingInput.add()
    target.name = label.name
    target.type.stringType.SetInParent()
    meta = desc.metadata
    for key, value in base.spec.description.metadata.userDefined.items():  # feature names, run id, version...
        if key != "tandem.updatable_layers":
            meta.userDefined[key] = value
    meta.author = "Tandem"
    meta.shortDescription = (f"{len(labels)}-class k-NN personal model ({neighbors} neighbours) over the embedding "
                             "of the released network; updatable on device: the k-NN index")
    meta.userDefined[CLASS_LABELS_KEY] = json.dumps(labels)
    meta.userDefined[PERSONAL_KEY] = "knn"
    meta.userDefined[BASE_SHA_KEY] = base.sha256
    if base.spec.description.metadata.versionString:
        meta.versionString = base.spec.description.metadata.versionString


def is_knn(model) -> bool:
    spec = model.spec if isinstance(model, DeviceModel) else load_spec(model)
    return spec.WhichOneof("Type") == "pipelineClassifier" and last_knn_stage(spec) is not None


def _stage(model: DeviceModel):
    stage = last_knn_stage(model.spec)
    if stage is None:
        raise ModelError(f"{model.kind!r} is not a k-NN personal model (a pipeline ending in a k-NN classifier)")
    return stage


def stored_labels(model) -> np.ndarray:
    """The labels of the rows the personal model's index holds, in storage order."""
    return samples(_stage(DeviceModel.load(model)))[1]


def embed(model: DeviceModel, X: np.ndarray) -> np.ndarray:
    stage = model.spec.pipelineClassifier.pipeline.models[0]
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    return run_network(stage.neuralNetwork, {stage.description.input[0].name: X})[EMBEDDING].reshape(len(X), -1)


def knn_update(model, X, y) -> DeviceModel:
    """What MLUpdateTask does to the pipeline: each row's embedding (stored as float32) and label appended
    to the index, in the given order. Labels must be among the released classes."""
    model = DeviceModel.load(model)
    stage = _stage(model)
    classes = set(class_labels(stage))
    y = [str(v) for v in y]
    unknown = sorted(set(y) - classes)
    if unknown:
        raise ValueError(f"labels {', '.join(unknown)} are not among the model's classes {sorted(classes)}")
    Z = embed(model, X).astype(np.float32)
    spec = load_spec(model.spec)
    k = spec.pipelineClassifier.pipeline.models[-1].kNearestNeighborsClassifier
    for z, label in zip(Z, y):
        k.nearestNeighborsIndex.floatSamples.add().vector.extend(z.tolist())
        k.stringClassLabels.vector.append(label)
    return DeviceModel.load(spec.SerializeToString(deterministic=True))


RELEASE_FILE = "personal_knn.mlmodel"


def release_files(base, neighbors: int | None) -> dict[str, bytes]:
    """The personal models a release ships beside its network: the k-NN pipeline when the task's devices use
    one (`device.knn_neighbors`), none otherwise."""
    return {} if neighbors is None else {RELEASE_FILE: knn_pipeline(base, neighbors).to_bytes()}


def describe(model) -> dict:
    """The k-NN personal model as the release manifest lists it, JSON-ready."""
    model = DeviceModel.load(model)
    stages = model.spec.pipelineClassifier.pipeline.models
    k = _stage(model).kNearestNeighborsClassifier
    return {"kind": "knn", "model_type": model.kind, "neighbors": int(k.numberOfNeighbors.defaultValue),
            "embedding_width": int(k.nearestNeighborsIndex.numberOfDimensions),
            "embedding_layers": [layer.name for layer in stages[0].neuralNetwork.layers],
            "stored_rows": len(k.stringClassLabels.vector), "class_labels": model.class_labels,
            "base_sha256": model.spec.description.metadata.userDefined.get(BASE_SHA_KEY)}
