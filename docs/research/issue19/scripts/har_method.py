"""HAR: the shipped fine-tune (all layers) vs a calibration layer on the logits, chosen on outer fold 0's
sharing users only (4 user-disjoint inner folds, the inner-eval users treated as never-sharing).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_method.py 0 0,1,2,3,4 all@0.01,calibration@0.1 u20,pc5,pc10,pc20   (outer fold, seeds, method@rate, budgets)
"""
import json, os, sys, time, numpy as np
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.training.device_update import policy_for as task_policy
from tandem.evaluation.methods.base import Fold, to_device
from tandem.evaluation.protocol_data import server_data
from tandem.release.params import DeviceUpdateConfig
from tandem.training import model
from inner_cv import inner_folds, personalized
OUT = os.environ.get("OUT", ".")

task = resolve("har"); kind = kind_of(task)
outer = int(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
variants = [v.split("@") for v in sys.argv[3].split(",")]  # scope@lr
budgets = sys.argv[4].split(",")
device = DeviceUpdateConfig.for_task(task)
out = open(f"{OUT}/har_inner_o{outer}_{sys.argv[2].replace(',', '')}.jsonl", "a")
for seed, inner, S, E, train in inner_folds(task, outer, seeds):
    X, y, groups = server_data(S)
    t = time.perf_counter()
    trained = model.train(X, y, train, groups=groups, **kind.train_options())
    for scope, lr in variants:
        layers = task.model.model_copy(update={"updatable": scope}).updatable_layers(len(train.hidden_sizes))
        fold = Fold(task, kind, S, seed, train.model_copy(update={"updatable_layers": layers}), device,
                    task_policy(task, learning_rate=float(lr)))
        dm = to_device(trained, fold)
        for s, b, base, p, acc in personalized(kind, dm, E, budgets, fold.policy):
            out.write(json.dumps({"outer": outer, "seed": seed, "inner": inner, "user": s.user.user_id,
                                  "variant": f"{scope}@{lr}", "budget": b, "base": base, "acc": acc,
                                  "epochs": p.epochs}) + "\n")
            out.flush()
    print(f"seed {seed} inner {inner}: {time.perf_counter() - t:.0f} s", flush=True)
