"""HAR: per-user feature centring (har_user_norm.py) under the shipped update policy: the generic model's
accuracy and personalization's gain, harm and growth with labels, on an outer fold's sharing users only
(4 user-disjoint inner folds, the inner-eval users treated as never-sharing).

Run from the repository root with its venv, OMP_NUM_THREADS=1; results go to $OUT (default .):
    python har_user_norm_policy.py 0 0,1,2 current,shrink0.5,center u20,pc5,pc10,pc20
"""
import dataclasses, json, os, sys, time
from tandem.task import resolve
from tandem.task.kinds import kind_of
from tandem.evaluation.protocol_data import server_data
from tandem.training.device_update import policy_for
from har_user_norm import normalize
from inner_cv import personalized, shipped_models
OUT = os.environ.get("OUT", ".")


def normalized(variant):
    """A transform for shipped_models: each side's features normalized by its own user's statistics."""
    def with_features(side, stats_rows, global_mean):
        user = dataclasses.replace(side.user)
        user.__dict__["features"] = normalize(side.X, stats_rows, variant, global_mean)  # the cached property
        return dataclasses.replace(side, user=user)

    def transform(S, E):
        mean = server_data(S)[0].mean(0)
        return [with_features(s, s.pool, mean) for s in E], *server_data([with_features(s, s.shared, mean) for s in S])
    return transform


def run(argv, transform_for):
    """argv: outer fold, seeds, variants, budgets; `transform_for(variant, outer)`: shipped_models' transform
    (None: the shipped model). One row per (variant, seed, inner fold, user, budget) in $OUT."""
    task = resolve("har"); kind = kind_of(task)
    outer = int(argv[1]); seeds = [int(s) for s in argv[2].split(",")]
    variants, budgets = argv[3].split(","), argv[4].split(",")
    out = open(f"{OUT}/har_user_norm_policy_o{outer}.jsonl", "a")
    for v in variants:
        t = time.perf_counter()
        for seed, inner, E, dm in shipped_models(task, outer, seeds, transform_for(v, outer)):
            for s, b, base, p, acc in personalized(kind, dm, E, budgets, policy_for(task)):
                out.write(json.dumps({"outer": outer, "seed": seed, "inner": inner, "user": s.user.user_id,
                                      "variant": v, "budget": b, "base": base, "acc": acc, "method": p.method}) + "\n")
                out.flush()
        print(f"{v}: {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    run(sys.argv, lambda v, outer: None if v == "current" else normalized(v))
