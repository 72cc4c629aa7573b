"""How a KNearestNeighborsClassifier stage predicts (Tandem's rule; TandemKit's interpreter is its twin).

The k stored samples nearest by squared Euclidean distance (fewer when fewer are stored; equal distances:
the earlier stored first), one vote each; the probabilities are the vote shares over the released class
labels; the label is the most voted, a tie going to the class whose voter is nearest. An empty index
predicts the default label. Core ML's own tie rule is not documented: a phone may differ on exact ties.
"""

from __future__ import annotations

import json

import numpy as np

CLASS_LABELS_KEY = "tandem.class_labels"  # JSON list: the released classes, the probabilities' order


class KnnError(ValueError):
    """A k-NN stage the device runtime cannot run."""


def last_knn_stage(spec):
    """The k-NN classifier that ends a pipeline spec (any pipeline kind), or None."""
    kind = spec.WhichOneof("Type")
    if kind not in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        return None
    stages = (getattr(spec, kind) if kind == "pipeline" else getattr(spec, kind).pipeline).models
    return stages[-1] if len(stages) and stages[-1].WhichOneof("Type") == "kNearestNeighborsClassifier" else None


def class_labels(spec) -> list[str]:
    """The released classes in the order of the probabilities (the stage's metadata, else the stored labels')."""
    given = spec.description.metadata.userDefined.get(CLASS_LABELS_KEY)
    if given:
        return [str(c) for c in json.loads(given)]
    k = spec.kNearestNeighborsClassifier
    return sorted({*map(str, k.stringClassLabels.vector), k.defaultStringLabel})


def samples(stage) -> tuple[np.ndarray, np.ndarray]:
    """The stored embeddings (float32 in the spec, as float64) and their labels."""
    k = stage.kNearestNeighborsClassifier
    index = k.nearestNeighborsIndex
    X = np.asarray([list(v.vector) for v in index.floatSamples], dtype=np.float64).reshape(-1, index.numberOfDimensions)
    return X, np.asarray([str(v) for v in k.stringClassLabels.vector], dtype=object)


def knn_forward(stage, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities (n, classes)) of a KNearestNeighborsClassifier stage on embeddings X."""
    k = stage.kNearestNeighborsClassifier
    index = k.nearestNeighborsIndex
    if index.WhichOneof("DistanceFunction") != "squaredEuclideanDistance":
        raise KnnError("k-NN: only the squared Euclidean distance is supported")
    if k.WhichOneof("WeightingScheme") == "inverseDistanceWeighting":
        raise KnnError("k-NN: inverse-distance weighting is not supported by the device runtime")
    if k.WhichOneof("ClassLabels") == "int64ClassLabels":
        raise KnnError("k-NN: int64 class labels are not supported by the device runtime")
    classes = class_labels(stage)
    column = {c: i for i, c in enumerate(classes)}
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] != index.numberOfDimensions:
        raise KnnError(f"k-NN: expects {index.numberOfDimensions}-dimensional inputs, got {X.shape[1]}")
    S, stored = samples(stage)
    probs = np.zeros((len(X), len(classes)))
    if not len(S):
        probs[:, column[k.defaultStringLabel]] = 1.0
        return np.asarray([k.defaultStringLabel] * len(X), dtype=object), probs
    n = min(int(k.numberOfNeighbors.defaultValue) or 1, len(S))
    d2 = ((X[:, None, :] - S[None, :, :]) ** 2).sum(axis=2)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :n]  # equal distances: the earlier stored first
    labels = np.empty(len(X), dtype=object)
    for r, idx in enumerate(nearest):
        voters = stored[idx]
        for v in voters:
            probs[r, column[v]] += 1.0 / n
        votes = {c: int(np.sum(voters == c)) for c in voters}
        top = max(votes.values())
        labels[r] = next(v for v in voters if votes[v] == top)  # a tie: the class whose voter is nearest
    return labels, probs
