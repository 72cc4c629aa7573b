"""Grunfeld: which on-device method, chosen on each outer fold's sharing firms only (inner folds).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python grunfeld_method.py 4 5 head,all,calibration 0.01   (inner folds, seeds, methods, policy rates)
"""
import json, os, sys, numpy as np
from tandem.task import resolve
from tandem.fleet.users import task_fleet
from tandem.evaluation.protocol_data import fold_split
from tandem.evaluation import regression_eval
from tandem.training.device_update import policy_for as task_policy
OUT = os.environ.get("OUT", ".")

base = resolve("grunfeld")
users = task_fleet(base)
inner, seeds = int(sys.argv[1]), int(sys.argv[2])
out = {}
variants = [(sc, lr) for sc in sys.argv[3].split(",") for lr in map(float, sys.argv[4].split(","))]
for scope, lr in variants:
    task = base.model_copy(update={"model": base.model.model_copy(update={"updatable": scope}),
                                   })
    scope = f"{scope}@{lr:g}"
    per = []
    for outer in range(3):
        sharers, _ = fold_split(users, outer, 3)
        r = regression_eval.evaluate(task, folds=inner, seeds=seeds, users=sharers, log=lambda *a: None,
                                     policy=task_policy(task, learning_rate=lr))
        c = r["claims"]
        per.append({"outer": outer, "generic": c["generic_mae_mean"], "personalized": c["personalized_mae_mean"],
                    "change": c["personalization_mae_change"], "ci": c["personalization_mae_change_ci95"],
                    "harmed": c["personalization_harmed_share"], "users": c["users"],
                    "per_user": r["summary"]["personalized_mae"]["per_user"]})
        print(scope, per[-1]["outer"], {k: v for k, v in per[-1].items() if k != "per_user"}, flush=True)
    out[scope] = per
json.dump(out, open(f"{OUT}/grunfeld_inner_{inner}x{seeds}_{sys.argv[3]}_{sys.argv[4]}.json", "w"), indent=1)

for k, per in out.items():
    print(k, "personalized MAE mean over outer folds %.4f" % np.mean([p["personalized"] for p in per]),
          "harmed", [round(p["harmed"], 2) for p in per])
