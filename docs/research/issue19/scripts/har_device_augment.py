"""What device-side rotation augmentation would give on `tandem evaluate`'s own protocol (3 folds x 5 seeds,
never-sharing users), for the variants the sharing users' inner CV chose (README Q2), measured once each and
not tuned here:

* rot45x2: each shared window also shared as 2 copies rotated by a random 3-D rotation (angle uniform in
  [0, 45] deg, acc and gyro together), featurized by the task's own featurizer: what a phone could do
  with today's featurizer (its upload triples). Generic and personalized by the shipped update policy.
* gfeat_rot30x4: 4 copies rotated by up to 30 deg, plus 31 gravity-frame features (README Q2): would need
  new featurization ops; generic accuracy only (the export names the task's features).

The server trains exactly as it would on such uploads: `model.train` on originals + copies, grouped by user
(a user's copies never straddle the validation split).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_device_augment.py 0,1,2 0,1,2,3,4 rot45x2,gfeat_rot30x4      (folds, seeds, variants)
"""
import json, os, sys, time
from dataclasses import replace

import numpy as np
import torch

from tandem.device.update_policy import personalize
from tandem.evaluation.methods.base import Fold, to_device
from tandem.evaluation.protocol import BUDGETS, layers_for
from tandem.evaluation.protocol_data import fold_split, server_data, sides
from tandem.evaluation.tuning import train_for_fold
from tandem.fleet.users import task_fleet
from tandem.release.params import DeviceUpdateConfig
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.device_update import policy_for
from tandem.training.personalization import pick_labelled

torch.set_num_threads(1)
OUT = os.environ.get("OUT", ".")
BANDS = [(1, 3), (4, 6), (7, 12), (13, 24), (25, 64)]


def random_rotations(n, max_deg, rng):
    """n rotations about uniformly random axes by angles uniform in [0, max_deg] (Rodrigues)."""
    a = rng.normal(size=(n, 3)); a /= np.linalg.norm(a, axis=1, keepdims=True)
    th = np.deg2rad(rng.uniform(0, max_deg, size=n))
    K = np.zeros((n, 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 0], K[:, 1, 2], K[:, 2, 0], K[:, 2, 1] = -a[:, 2], a[:, 1], a[:, 2], -a[:, 0], -a[:, 1], a[:, 0]
    s, c = np.sin(th)[:, None, None], np.cos(th)[:, None, None]
    return np.eye(3)[None] + s * K + (1 - c) * K @ K


def rotate(windows, R):
    out = windows.copy()
    out[:, :, 0:3] = np.einsum("nij,ntj->nti", R, windows[:, :, 0:3])
    out[:, :, 3:6] = np.einsum("nij,ntj->nti", R, windows[:, :, 3:6])
    return out


def gravity_frame_features(windows):
    """README Q2's 31 features: body acc and gyro along / across the window's mean gravity, |acc|."""
    acc, gyr = windows[:, :, 0:3], windows[:, :, 3:6]
    g = acc.mean(1); gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    sigs = []
    for v in (acc - g[:, None, :], gyr):
        vert = np.einsum("ntc,nc->nt", v, gn)
        sigs += [vert, np.linalg.norm(v - vert[:, :, None] * gn[:, None, :], axis=2)]
    sigs.append(np.linalg.norm(acc, axis=2))
    feats = []
    for s in sigs:
        q75, q25 = np.percentile(s, [75, 25], axis=1)
        feats += [s.mean(1), s.std(1), s.min(1), s.max(1), q75 - q25]
        sp = np.abs(np.fft.rfft(s - s.mean(1, keepdims=True), axis=1)) ** 2 / s.shape[1]
        feats += [np.log1p(sp[:, a:b + 1].sum(1)) for a, b in BANDS]
    feats.append(np.linalg.norm(g, axis=1))
    return np.stack(feats, 1)


if __name__ == "__main__":
    task = resolve("har"); kind = kind_of(task)
    users = task_fleet(task)
    folds = [int(f) for f in sys.argv[1].split(",")]
    seeds = [int(s) for s in sys.argv[2].split(",")]
    variants = sys.argv[3].split(",")
    featurize = users[0].featurization.featurize
    device = DeviceUpdateConfig.for_task(task)
    policy = policy_for(task)
    train_of = train_for_fold(task, 3)
    out = open(f"{OUT}/har_device_augment_f{sys.argv[1].replace(',', '')}_s{sys.argv[2].replace(',', '')}.jsonl", "a")

    for seed in seeds:
        for f in folds:
            sharers, evaluators = fold_split(users, f, 3)
            S, E = sides(sharers, 0.5, kind), sides(evaluators, None, kind)
            train = train_of(f).model_copy(update={"seed": seed, "updatable_layers": layers_for(task, train_of(f), None)})
            fold = Fold(task, kind, S, seed, train, device, policy)
            X, y, groups = server_data(S)
            W = np.concatenate([s.user.windows[s.shared] for s in S])
            rng = np.random.default_rng(1000 + 100 * f + seed)
            for variant in ["base", *variants]:
                t = time.perf_counter()
                row = {"fold": f, "seed": seed, "variant": variant}
                if variant == "base":
                    Xt, yt, gt, extra = X, y, groups, None
                else:
                    deg, copies = {"rot45x2": (45, 2), "gfeat_rot30x4": (30, 4)}[variant]
                    Wa = np.concatenate([rotate(W, random_rotations(len(W), deg, rng)) for _ in range(copies)])
                    Xa = featurize(Wa)
                    extra = variant.startswith("gfeat")
                    if extra:
                        X0, Xa = np.hstack([X, gravity_frame_features(W)]), np.hstack([Xa, gravity_frame_features(Wa)])
                    else:
                        X0 = X
                    Xt, yt, gt = np.concatenate([X0, Xa]), np.concatenate([y] + [y] * copies), np.concatenate([groups] + [groups] * copies)
                trained = model.train(Xt, yt, train, groups=gt, **kind.train_options())
                row["rows"] = int(len(yt))
                if extra:  # generic only: score the torch network on features + gravity-frame features
                    row["generic"] = {s.user.user_id: float(np.mean(model.predict_proba(trained.model, np.hstack(
                        [s.X[s.test], gravity_frame_features(s.user.windows[s.test])])).argmax(1) == s.y[s.test])) for s in E}
                else:
                    dm = to_device(trained, fold)
                    rate = kind.device_rate(policy.learning_rate, float(trained.model.target_std), train.updatable_layers)
                    pol = replace(policy, learning_rate=rate)
                    row["generic"] = {s.user.user_id: kind.score(dm.predict(s.X[s.test]), s.user.labels[s.test])["accuracy"] for s in E}
                    for b, pick in BUDGETS.items():
                        row[b] = {}
                        for s in E:
                            lab = pick_labelled(s.user.labels, s.pool, **pick)
                            p = personalize(dm, s.X[lab], s.user.labels[lab], pol)
                            row[b][s.user.user_id] = kind.score(p.model.predict(s.X[s.test]), s.user.labels[s.test])["accuracy"]
                row["seconds"] = time.perf_counter() - t
                out.write(json.dumps(row) + "\n"); out.flush()
                print(f"fold {f} seed {seed} {variant}: generic {np.mean(list(row['generic'].values())):.4f} "
                      f"({row['seconds']:.0f} s)", flush=True)
