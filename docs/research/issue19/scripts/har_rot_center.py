"""HAR: device-side rotation augmentation (har_device_augment.py's rot45x2: each shared window also shared as
2 copies rotated by up to 45 deg, today's featurizer) with and without per-user centring (har_user_norm.py:
every row, copies too, minus its user's mean over its original rows), under the shipped update policy, on an
outer fold's sharing users only (4 user-disjoint inner folds, the inner-eval users treated as never-sharing).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_rot_center.py 0 0,1,2 rot45x2,rot45x2+center u20,pc5,pc10,pc20
"""
import sys
import numpy as np
from tandem.evaluation.protocol_data import server_data
from har_device_augment import random_rotations, rotate
from har_user_norm_policy import normalized, run


def rotated(centre, outer):
    """A transform for shipped_models: the trainers' shared rows plus 2 copies rotated by up to 45 deg."""
    def transform(S, E):
        E, X, y, groups = normalized("center")(S, E) if centre else (E, *server_data(S))
        rng = np.random.default_rng(1000 + outer)
        featurize = S[0].user.featurization.featurize
        Xs, ys, gs = [X], [y], [groups]
        for _ in range(2):
            for s in S:
                W = s.user.windows[s.shared]
                Xa = featurize(rotate(W, random_rotations(len(W), 45, rng)))
                Xs.append(Xa - s.X[s.shared].mean(0) if centre else Xa)
                ys.append(s.y[s.shared]); gs.append([s.user.user_id] * len(W))
        return E, np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs)
    return transform


if __name__ == "__main__":
    run(sys.argv, lambda v, outer: rotated(v.endswith("+center"), outer))
