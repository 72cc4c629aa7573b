"""HAR generic accuracy with extra features from the existing ops (no new op: the Swift featurizer runs
them already), chosen on outer folds' sharing users only (4 inner folds).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_features.py 0,1 0,1,2 current,jerk_axes+jerk_spectrum+gravity_spectrum   (one process per variant)
"""
import json, os, sys, time, numpy as np
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.fleet.users import task_fleet
from tandem.evaluation.protocol_data import fold_split, sides, server_data
from tandem.evaluation.tuning import train_for_fold
from tandem.training import model
OUT = os.environ.get("OUT", ".")

base = resolve("har")
J = ["body_jerk_x", "body_jerk_y", "body_jerk_z", "gyro_jerk_x", "gyro_jerk_y", "gyro_jerk_z"]
EXTRA = {
    "jerk_axes": [{"op": "stats", "inputs": J, "params": {"statistics": ["mean", "std", "min", "max"]}},
                  {"op": "robust", "inputs": J, "params": {"statistics": ["iqr", "mad"]}}],
    "jerk_spectrum": [{"op": "spectrum", "inputs": ["body_jerk_mag", "gyro_jerk_mag"],
                       "params": {"bands": [[1, 3], [4, 6], [7, 12], [13, 24], [25, 64]]}}],
    "gravity_spectrum": [{"op": "spectrum", "inputs": ["gravity_x", "gravity_y", "gravity_z"],
                          "params": {"bands": [[0, 0], [1, 3], [4, 12]]}}],
}
variants = sys.argv[3].split(",")
outers = [int(o) for o in sys.argv[1].split(",")]; seeds = [int(s) for s in sys.argv[2].split(",")]
out = open(f"{OUT}/har_feat.jsonl", "a")
for v in variants:
    ops = [op for name in v.split("+") if name != "current" for op in EXTRA[name]]
    task = base.model_copy(update={"featurization": list(base.featurization) + ops}) if ops else base
    kind = kind_of(task)
    t = time.perf_counter(); users = task_fleet(task); print(v, "fleet", f"{time.perf_counter() - t:.0f} s",
                                                            users[0].features.shape, flush=True)
    for outer in outers:
        sharers, _ = fold_split(users, outer, 3)
        train0 = train_for_fold(base, 3)(outer)
        for seed in seeds:
            for inner in range(4):
                tr, ev = fold_split(sharers, inner, 4)
                S, E = sides(tr, 0.5, kind), sides(ev, None, kind)
                X, y, groups = server_data(S)
                trained = model.train(X, y, train0.model_copy(update={"seed": seed}), groups=groups, **kind.train_options())
                for s in E:
                    acc = float(np.mean(np.asarray(kind.classes)[model.predict_proba(trained.model, s.X[s.test]).argmax(1)]
                                        == s.user.labels[s.test].astype(str)))
                    out.write(json.dumps({"variant": v, "outer": outer, "seed": seed, "user": s.user.user_id,
                                          "acc": acc, "n_features": int(X.shape[1])}) + "\n")
                out.flush()
        print(v, "outer", outer, f"{time.perf_counter() - t:.0f} s", flush=True)
