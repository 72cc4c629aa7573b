"""Local only: a network of the server's shape trained on the user's labelled rows alone (what a
device could learn without anyone sharing)."""

from __future__ import annotations

import numpy as np
import torch

from tandem.evaluation.methods.base import Fitted, Fold, Personal, evaluate
from tandem.evaluation.protocol_data import Side
from tandem.training import model

LOCAL_TRAINING = {"epochs": 150, "patience": 20}


def outputs(net: model.Classifier, X: np.ndarray) -> np.ndarray:
    """The network's outputs (n, outputs), float64 (a classifier's logits, a regressor's values)."""
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(np.asarray(X, np.float64), dtype=torch.float32)).double().numpy()


class LocalOnly:
    rival = False

    def fit(self, fold: Fold) -> None:
        return None

    def personalize(self, fold: Fold, fitted: Fitted | None, side: Side, labelled: np.ndarray) -> Personal:
        cfg = fold.train.model_copy(update=LOCAL_TRAINING)
        net = model.train(side.X[labelled], side.y[labelled], cfg, **fold.kind.train_options()).model
        return Personal(lambda X: fold.kind.decode(outputs(net, X)))

    def evaluate(self, fold: Fold, predict, side: Side) -> dict[str, float]:
        return evaluate(fold, predict, side)
