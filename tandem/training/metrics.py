"""Classification metrics and a confusion-matrix plot (numpy and matplotlib's Agg canvas only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _as_indices(values, labels: Sequence[str]) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind in "USO":
        index = {str(name): i for i, name in enumerate(labels)}
        try:
            return np.asarray([index[str(v)] for v in values], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"unknown label {e.args[0]!r}; labels are {list(labels)}") from None
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        return values.astype(np.int64)
    raise ValueError(f"labels must be class indices or names, got dtype {values.dtype}")


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be within 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision, recall, F1 and support.

    y_true, y_pred: class indices into `labels` (or the label names themselves). A class that
    neither occurs nor is predicted has no F1 (None) and is left out of the macro average; a class
    that occurs or is predicted but is never right has F1 0.
    """
    labels = [str(label) for label in labels]
    t = _as_indices(y_true, labels)
    p = _as_indices(y_pred, labels)
    cm = confusion_matrix(t, p, len(labels))
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_f1, per_precision, per_recall = {}, {}, {}
    f1s = []
    for i, name in enumerate(labels):
        per_precision[name] = float(tp[i] / predicted[i]) if predicted[i] else None
        per_recall[name] = float(tp[i] / support[i]) if support[i] else None
        denom = support[i] + predicted[i]
        per_f1[name] = float(2 * tp[i] / denom) if denom else None  # 2TP / (2TP + FP + FN)
        if per_f1[name] is not None:
            f1s.append(per_f1[name])
    return {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "per_class_f1": per_f1,
        "per_class_precision": per_precision,
        "per_class_recall": per_recall,
        "support": {name: int(s) for name, s in zip(labels, support)},
        "n": n,
    }


def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], path: str | Path,
                          title: str = "confusion matrix") -> Path:
    """A PNG of the matrix: counts in the cells, colors by row-normalized share (recall per class)."""
    # matplotlib is heavy (about 0.5 s): imported only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    n = len(labels)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix {cm.shape} does not match {n} labels")
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)

    size = max(4.5, 0.9 * n + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path


def regression_metrics(y_true, y_pred) -> dict:
    """Mean absolute error, root mean squared error and R^2, in target units."""
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    err = p - t
    spread = float(((t - t.mean()) ** 2).sum()) if len(t) else 0.0
    return {"mae": float(np.abs(err).mean()) if len(t) else float("nan"),
            "rmse": float(np.sqrt((err ** 2).mean())) if len(t) else float("nan"),
            "r2": float(1 - (err ** 2).sum() / spread) if spread > 0 else float("nan"), "n": int(len(t))}


def plot_predicted_vs_true(y_true, y_pred, path: str | Path, unit: str = "", title: str = "predicted vs true") -> Path:
    """A PNG scatter of predictions against targets, with the diagonal a perfect model would sit on."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    fig = Figure(figsize=(5.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(t, p, s=12, alpha=0.6)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    ax.set_xlabel(f"true {unit}".strip())
    ax.set_ylabel(f"predicted {unit}".strip())
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
