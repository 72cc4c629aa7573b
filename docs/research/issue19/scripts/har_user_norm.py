"""HAR generic accuracy with per-user feature normalization: each user's features are centred (or z-scored)
by that user's own statistics - a sharing user's over its shared rows (what the server sees under one
pseudonym), a never-sharing user's over its unlabelled pool (what the phone has). Chosen on outer folds'
sharing users only (4 inner folds).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_user_norm.py 0,1 0,1,2 current,center,zscore,raw+center,shrink0.5
"""
import json, os, sys, time, numpy as np
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.evaluation.protocol_data import server_data
from tandem.training import model
from inner_cv import inner_folds
OUT = os.environ.get("OUT", ".")


def normalize(X, stats_rows, variant, global_mean):
    """variant: current, center, zscore, raw+center, or shrink<a> (move the user's mean a of the way to the
    fleet's mean: a = 1 is center plus a constant)."""
    if variant == "current":
        return X
    mu, sd = X[stats_rows].mean(0), X[stats_rows].std(0) + 1e-6
    if variant.startswith("shrink"):
        return X - float(variant[6:]) * (mu - global_mean)
    centred = X - mu
    return {"center": centred, "zscore": centred / sd, "raw+center": np.hstack([X, centred])}[variant]


if __name__ == "__main__":
    task = resolve("har"); kind = kind_of(task)
    outers = [int(o) for o in sys.argv[1].split(",")]; seeds = [int(s) for s in sys.argv[2].split(",")]
    variants = sys.argv[3].split(",")
    out = open(f"{OUT}/har_user_norm.jsonl", "a"); t = time.perf_counter()
    for outer in outers:
        for seed, inner, S, E, train in inner_folds(task, outer, seeds):
            raw, y, groups = server_data(S)
            for v in variants:
                X = np.concatenate([normalize(s.X, s.shared, v, raw.mean(0))[s.shared] for s in S])
                trained = model.train(X, y, train, groups=groups, **kind.train_options())
                for s in E:
                    Xe = normalize(s.X, s.pool, v, raw.mean(0))[s.test]
                    acc = float(np.mean(np.asarray(kind.classes)[model.predict_proba(trained.model, Xe).argmax(1)]
                                        == s.user.labels[s.test].astype(str)))
                    out.write(json.dumps({"variant": v, "outer": outer, "seed": seed, "inner": inner,
                                          "user": s.user.user_id, "acc": acc}) + "\n")
                out.flush()
            print("outer", outer, "seed", seed, "inner", inner, f"{time.perf_counter() - t:.0f} s", flush=True)
