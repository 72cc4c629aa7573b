"""Attacks that measure what a sharing form actually protects, from the server's side.

- `linkage`: the server holds each user's shared windows under a pseudonym; a later batch arrives
  under a pseudonym it has never seen (a rotated key, a second device). Can the features alone
  (and the shared label) name its user? Top-1 accuracy of the batch's user against chance 1/users.
- `attribute_inference`: the quasi-identifiers (device metadata) of such a batch, recovered by
  linking it and reading the linked user's stored values; against guessing the most common value.
- `membership_loss_auc` / `membership_shadow_auc`: was this window (or this user) in the released
  model's training data? The loss-threshold attack (Yeom et al. 2018) scores -loss; the shadow-model
  attack (Shokri et al. 2017) trains models like the target on data the attacker holds and learns
  in/out from their outputs. AUC 0.5 is a coin.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tandem.training.membership import auc, losses, membership_loss_auc

__all__ = ["attribute_inference", "linkage", "membership_loss_auc", "membership_shadow_auc",
           "user_membership_loss_auc"]


def _features(X: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    return np.hstack([X, np.eye(classes)[y]])


def linkage(reference: dict[str, tuple[np.ndarray, np.ndarray]], batches: dict[str, tuple[np.ndarray, np.ndarray]],
            classes: int, seed: int = 0) -> dict:
    """Top-1 of matching each never-seen batch to its user.

    `reference[user] = (X, y)`: what the server holds per pseudonym; `batches[user] = (X, y)`: the
    batch that arrives under a new pseudonym. A multinomial logistic regression on features and label
    learns "which user"; a batch goes to the user with the highest summed log-probability."""
    users = sorted(reference)
    Xr = np.vstack([_features(*reference[u], classes) for u in users])
    yr = np.concatenate([[i] * len(reference[u][0]) for i, u in enumerate(users)])
    scaler = StandardScaler().fit(Xr)
    clf = LogisticRegression(max_iter=300, C=1.0, random_state=seed).fit(scaler.transform(Xr), yr)
    hits, ranks = 0, []
    predicted = {}
    for u, (X, y) in batches.items():
        logp = clf.predict_log_proba(scaler.transform(_features(X, y, classes))).sum(0)
        order = np.argsort(-logp)
        guess = users[int(order[0])]
        predicted[u] = guess
        hits += guess == u
        ranks.append(int(np.flatnonzero(np.array(users)[order] == u)[0]) + 1)
    n = max(len(batches), 1)
    return {"top1": hits / n, "chance": 1 / len(users), "batches": len(batches), "users": len(users),
            "mean_rank": float(np.mean(ranks)) if ranks else float("nan"), "predicted": predicted}


def attribute_inference(linked: dict[str, str], stored: dict[str, dict], truth: dict[str, dict]) -> dict:
    """Per quasi-identifier: how often the linked user's stored value equals the batch user's true
    (plain) value, against always guessing the most common stored value."""
    out = {}
    columns = sorted(next(iter(truth.values())))
    for c in columns:
        values = [stored[u][c] for u in stored]
        common = max(set(values), key=values.count)
        via_link = np.mean([stored[linked[u]][c] == truth[u][c] for u in linked])
        baseline = np.mean([common == truth[u][c] for u in linked])
        out[c] = {"recovered": float(via_link), "baseline": float(baseline)}
    out["mean_recovered"] = float(np.mean([out[c]["recovered"] for c in columns]))
    out["mean_baseline"] = float(np.mean([out[c]["baseline"] for c in columns]))
    return out


def user_membership_loss_auc(predict_proba, members: list[tuple[np.ndarray, np.ndarray]],
                             non_members: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The same at the level of users: a user's mean loss over their windows."""
    score = lambda parts: np.array([-losses(predict_proba, X, y).mean() for X, y in parts])
    return auc(score(members), score(non_members))


def attack_features(predict_proba, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(predict_proba(X), 1e-12, 1.0)
    true = p[np.arange(len(y)), y]
    ent = -(p * np.log(p)).sum(1)
    return np.column_stack([-np.log(true), p.max(1), ent, (p.argmax(1) == y).astype(float)])


def membership_shadow_auc(train_fn, predict_proba, attacker_users: list[tuple[np.ndarray, np.ndarray]],
                          members: tuple[np.ndarray, np.ndarray], non_members: tuple[np.ndarray, np.ndarray],
                          shadows: int = 2, seed: int = 0) -> float:
    """Shadow models: `train_fn(X, y, groups) -> predict_proba` is trained like the target on half of
    the attacker's users (in) and scored on the other half (out); a logistic regression on the
    outputs then judges the target's members and non-members."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for s in range(shadows):
        order = rng.permutation(len(attacker_users))
        half = len(order) // 2
        inside, outside = order[:half], order[half:]
        X = np.vstack([attacker_users[i][0] for i in inside])
        y = np.concatenate([attacker_users[i][1] for i in inside])
        g = np.concatenate([[i] * len(attacker_users[i][1]) for i in inside])
        shadow = train_fn(X, y, g)
        feats.append(attack_features(shadow, X, y))
        labels.append(np.ones(len(y)))
        Xo = np.vstack([attacker_users[i][0] for i in outside])
        yo = np.concatenate([attacker_users[i][1] for i in outside])
        feats.append(attack_features(shadow, Xo, yo))
        labels.append(np.zeros(len(yo)))
    scaler = StandardScaler().fit(np.vstack(feats))
    attack = LogisticRegression(max_iter=500).fit(scaler.transform(np.vstack(feats)), np.concatenate(labels))
    score = lambda X, y: attack.predict_proba(scaler.transform(attack_features(predict_proba, X, y)))[:, 1]
    return auc(score(*members), score(*non_members))
