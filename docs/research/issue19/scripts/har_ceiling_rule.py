"""HAR: the ungated update's outcome per user with its held-out trace, to simulate acceptance rules offline
(outer fold's sharing users only, 4 inner folds).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_ceiling_rule.py 0 0,1,2,3,4 u20,pc5,pc10,pc20   (outer fold, seeds, budgets)
"""
import json, os, sys, time
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.training.device_update import policy_for as task_policy
from inner_cv import personalized, shipped_models
OUT = os.environ.get("OUT", ".")

task = resolve("har"); kind = kind_of(task)
outer = int(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
budgets = sys.argv[3].split(",")
out = open(f"{OUT}/har_rule_o{outer}.jsonl", "a")
t = time.perf_counter()
for seed, inner, E, dm in shipped_models(task, outer, seeds):
    for s, b, base, p, acc in personalized(kind, dm, E, budgets, task_policy(task, accept_margin=None)):
        out.write(json.dumps({"outer": outer, "seed": seed, "inner": inner, "user": s.user.user_id,
                              "budget": b, "base": base, "acc": acc, "epochs": p.epochs,
                              "best_epoch": p.best_epoch, "losses": p.holdout_losses,
                              "errors": p.holdout_errors}) + "\n")
        out.flush()
    print(f"seed {seed} inner {inner}: {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
