"""HAR: the shipped acceptance check (one held-out third of the labels) against a k-fold check that gives
every labelled window one turn as held out, on outer folds' sharing users only (4 user-disjoint inner
folds, the inner-eval users treated as never-sharing; same split of their windows as the protocol).

k-fold check (k = 3): per class, the labelled windows in capture order are cut into k contiguous blocks;
for each block, task A updates the base on the other blocks (early stop on the block's held-out
cross-entropy, as shipped) and the block's rows count better/worse at its best epoch; the update is
accepted when the net count summed over the k turns reaches max(1, ceil(margin x labelled rows)); task B
then refits on all labels for the median of the turns' best epochs (turns with E = 0 count as 0).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_cv_check.py 0 0,1,2,3,4 u20,pc5,pc10,pc20      (outer fold, seeds, budgets)
"""
import json, math, os, sys, time

import numpy as np
import torch

from tandem.device.update import UpdateDiverged, update
from tandem.device.update_policy import (acceptance, base_output, best_epoch, epoch_check, interleave, personalize,
                                         unusable_rows)
from tandem.evaluation.protocol import BUDGETS
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.training.device_update import policy_for
from tandem.training.personalization import pick_labelled

from inner_cv import shipped_models

torch.set_num_threads(1)
OUT = os.environ.get("OUT", ".")
K = 3
MARGINS = (0.05, 0.1, 0.15)


def cv_check(base, X, y, policy):
    """Per margin: the personalized model (or the base) under the k-fold check."""
    X = np.asarray(X, np.float64); y = np.asarray(y).astype(str)
    bad = unusable_rows(base, X, y)
    X, y = X[~bad], y[~bad]
    order = interleave(y); X, y = X[order], y[order]
    blocks = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        for j, part in enumerate(np.array_split(rows, K)):
            blocks[part] = j
    common = dict(learning_rate=policy.learning_rate, mini_batch_size=policy.mini_batch_size, shuffle=False)
    net, epochs = 0, []
    for j in range(K):
        hold, keep = np.flatnonzero(blocks == j), np.flatnonzero(blocks != j)
        if not len(hold) or not len(keep):
            epochs.append(0); continue
        Xv, yv = X[hold], y[hold]
        losses, errors = [], []

        def record(out):
            loss, errs = epoch_check(out, yv, base.class_labels)
            losses.append(loss); errors.append(errs)

        record(base_output(base, Xv, yv))

        def progress(epoch, predict):
            record(predict(Xv))
            return not np.isfinite(losses[-1]) or epoch - best_epoch(losses) >= policy.patience

        keep = keep[interleave(y[keep])]
        try:
            update(base, X[keep], y[keep], on_epoch=progress, epochs=policy.max_epochs, **common)
        except UpdateDiverged:
            pass
        e = best_epoch(losses)
        epochs.append(e)
        if e > 0:
            net += acceptance(errors[0], errors[e], None)["net"]
    E = int(np.median(epochs))
    out = {}
    for m in MARGINS:
        needed = max(1, math.ceil(m * len(y) - 1e-9))
        if E > 0 and net >= needed:
            out[m] = update(base, X, y, epochs=E, **common).model
        else:
            out[m] = base
    return out, net, E


task = resolve("har"); kind = kind_of(task)
outer = int(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
budgets = sys.argv[3].split(",")
policy = policy_for(task)
out = open(f"{OUT}/har_cv_check_o{outer}_{sys.argv[2].replace(',', '')}.jsonl", "a")
t = time.perf_counter()
for seed, inner, E, dm in shipped_models(task, outer, seeds):
    for s in E:
        test = s.X[s.test], s.user.labels[s.test]
        base = kind.score(dm.predict(test[0]), test[1])["accuracy"]
        for b in budgets:
            lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
            accs = {"shipped": kind.score(personalize(dm, s.X[lab], s.user.labels[lab], policy).model.predict(test[0]),
                                          test[1])["accuracy"]}
            models, net, e = cv_check(dm, s.X[lab], s.user.labels[lab], policy)
            for m, pm in models.items():
                accs[f"cv{K}@{m}"] = kind.score(pm.predict(test[0]), test[1])["accuracy"]
            out.write(json.dumps({"outer": outer, "seed": seed, "inner": inner, "user": s.user.user_id, "budget": b,
                                  "base": base, "acc": accs, "cv_net": net, "cv_epochs": e}) + "\n")
            out.flush()
    print(f"outer {outer} seed {seed} inner {inner}: {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
