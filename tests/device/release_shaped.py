"""Release-shaped models for the Swift side's tests: built by the release's own exporter
(tandem.training.export) from seeded weights, so no training is needed (fast) and the spec is what a
release ships: batchnorm standardization, dense body with ReLU, updatable head, softmax or MSE."""

from __future__ import annotations

import numpy as np

from tandem.device import golden
from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy


def weights(seed: int = 0, d: int = 8, hidden=(16,), k: int = 3, regression: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    sizes = (d, *hidden, 1 if regression else k)
    layers = [{"name": f"body.{i}" if i < len(hidden) else "head",
               "W": rng.normal(0, 1 / np.sqrt(n_in), size=(n_out, n_in)).astype(np.float32),
               "b": rng.normal(0, 0.1, size=n_out).astype(np.float32),
               "activation": "relu" if i < len(hidden) else None}
              for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return {"regression": regression, "mean": rng.normal(0, 2, d).astype(np.float32),
            "std": rng.uniform(0.5, 3, d).astype(np.float32), "layers": layers, "n_features": d,
            "n_classes": sizes[-1]}


def model(seed: int = 0, d: int = 8, hidden=(16,), labels=("sit", "stand", "walk"), regression: bool = False,
          updatable=("body.0", "head")) -> DeviceModel:
    from tandem.training import export

    w = weights(seed, d, hidden, len(labels), regression)
    spec = export.to_updatable_mlmodel(w, list(labels), updatable_layers=list(updatable), feature_names=None)
    return DeviceModel.load(spec.SerializeToString())


def rows(m: DeviceModel, n: int, seed: int = 1) -> np.ndarray:
    """Feature vectors around the model's standardization (so every class gets some mass)."""
    from tandem.device.runtime import batchnorm_scale_shift
    from tandem.device.update import trainable

    _, nn, _ = trainable(m.spec)
    s, t = batchnorm_scale_shift(nn.layers[0])  # z = x*s + t  ->  x = (z - t) / s
    z = np.random.default_rng(seed).normal(0, 1.5, size=(n, len(s)))
    return (z - t) / s


def nearest_centre_user(m: DeviceModel, seed: int):
    """60 rows labelled by the nearest of three of them: a user the base gets wrong in a way a k-NN can
    follow (the users of the Swift k-NN fixtures and of the k-NN tests in both languages)."""
    X = rows(m, 60, seed)
    centres = X[np.random.default_rng(seed).choice(len(X), 3, replace=False)]
    return X, np.asarray(m.class_labels)[((X[:, None] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)]


def labelled(m: DeviceModel, per_class: int = 8, seed: int = 2):
    """A user's labelled rows in capture order. The user differs from the base systematically (a
    classifier's first class is labelled as the second; a regressor's values sit higher), so the
    update has something to learn and the held-out loss falls for a few epochs."""
    X = rows(m, per_class * 12, seed)
    rng = np.random.default_rng(seed)
    if not m.is_classifier:
        n = per_class * 3
        return X[:n], (m.predict(X[:n]) * 0.8 + 1.0 + rng.normal(0, 0.1, n)).astype(np.float64)
    predicted = m.predict(X).astype(str)
    picks = np.array(sorted(i for c in m.class_labels for i in np.flatnonzero(predicted == c)[:per_class].tolist()))
    y = predicted[picks].copy()
    y[y == m.class_labels[0]] = m.class_labels[1]
    return X[picks], y


def policy_trace(m: DeviceModel, X, y, policy: UpdatePolicy | None = None) -> dict:
    return golden.policy_trace(m, X, y, policy or UpdatePolicy(learning_rate=0.05, max_epochs=40, patience=5))
