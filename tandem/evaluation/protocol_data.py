"""The robust protocol's data: leave-group-out folds over users, and what each side may see.

Fold f of k: the users at positions i with (i + 1) % k == f never share (fold 0 of 3 is the
release's split: users 03, 06, ..., 30). Every user is a never-sharing user in exactly one fold.
Each user's windows split into a local pool and held-out test windows (`personalization.local_split`);
a sharing user shares the `sharing.shared_mask` part of its pool: that is all the server sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.fleet.sharing import shared_mask
from tandem.fleet.users import UserData
from tandem.task.kinds import Kind
from tandem.training.personalization import local_split


def fold_split(users: list[UserData], fold: int, n_folds: int) -> tuple[list[UserData], list[UserData]]:
    """(sharing users, never-sharing users) of one fold."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} is not within 0..{n_folds - 1}")
    evaluation = [u for i, u in enumerate(users) if (i + 1) % n_folds == fold]
    return [u for u in users if u not in evaluation], evaluation


@dataclass
class Side:
    """One user's windows as the protocol splits them."""

    user: UserData
    pool: np.ndarray  # rows the device may label, share and train on
    test: np.ndarray  # held-out rows, scored for every method
    shared: np.ndarray  # rows of the pool it shares (empty for never-sharing users)
    kind: Kind  # the task's kind: what the network trains on

    @property
    def X(self) -> np.ndarray:
        return self.user.features

    @property
    def y(self) -> np.ndarray:
        """The training targets of every row (class indices, or the numeric target)."""
        return self.kind.targets(self.user.labels)


def sides(users: list[UserData], fraction: float | None, kind: Kind, test_fraction: float = 0.5) -> list[Side]:
    """fraction None: the users never share."""
    out = []
    for u in users:
        pool, test = local_split(u, test_fraction)
        if fraction is None:
            shared = np.empty(0, np.int64)
        else:
            in_pool = UserData(u.user_id, u.windows[pool], u.labels[pool], [u.window_keys[i] for i in pool],
                               u.captured_at[pool], task=u.task)
            shared = pool[shared_mask(in_pool, fraction)]
        out.append(Side(u, pool, test, shared, kind))
    return out


def server_data(sharers: list[Side]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, user groups) of every shared window: the server's training data."""
    X = np.concatenate([s.X[s.shared] for s in sharers])
    y = np.concatenate([s.y[s.shared] for s in sharers])
    groups = np.concatenate([[s.user.user_id] * len(s.shared) for s in sharers])
    return X, y, groups
