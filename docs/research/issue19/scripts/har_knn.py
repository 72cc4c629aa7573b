"""HAR: the shipped policy (fine-tune only) against the same policy with the k-NN personal model as a second
candidate (`device.knn_neighbors` k), on an outer fold's sharing users only (4 user-disjoint inner folds, the
inner-eval users treated as never-sharing). The task's own device settings otherwise (accept_margin 0.05,
holdout_folds 3).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_knn.py 0 0,1,2 none,1,3,5 u20,pc5,pc10,pc20   (outer fold, seeds, k values, budgets)
"""
import json, os, sys, time
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.training.device_update import policy_for
from inner_cv import personalized, shipped_models
OUT = os.environ.get("OUT", ".")

task = resolve("har"); kind = kind_of(task)
outer = int(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
ks = [None if k == "none" else int(k) for k in sys.argv[3].split(",")]
budgets = sys.argv[4].split(",")
out = open(f"{OUT}/har_knn_o{outer}_{sys.argv[2].replace(',', '')}.jsonl", "a")
t = time.perf_counter()
for seed, inner, E, dm in shipped_models(task, outer, seeds):
    for k in ks:
        for s, b, base, p, acc in personalized(kind, dm, E, budgets, policy_for(task, knn_neighbors=k)):
            out.write(json.dumps({"outer": outer, "seed": seed, "inner": inner, "user": s.user.user_id,
                                  "variant": f"knn{k}" if k else "shipped", "budget": b, "base": base, "acc": acc,
                                  "epochs": p.epochs, "method": p.method}) + "\n")
            out.flush()
    print(f"seed {seed} inner {inner}: {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
