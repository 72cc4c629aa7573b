"""python har_device_augment_analyse.py OUT/har_device_augment_*.jsonl
Per variant: generic mean and sd over seeds (the protocol's way), the paired difference to the base per
user (seed means, 95 % t CI over the 30 users), and the shipped policy's gain over the variant's own
generic model per budget, with the users it harms."""
import json, sys
import numpy as np
from tandem.evaluation import protocol

rows = [json.loads(line) for path in sys.argv[1:] for line in open(path)]


def per_user(variant, key):
    d = {}
    for r in rows:
        if r["variant"] == variant and key in r:
            for u, a in r[key].items():
                d.setdefault(u, []).append(a)
    return {u: float(np.mean(v)) for u, v in d.items()}


def per_seed(variant, key):
    seeds = sorted({r["seed"] for r in rows})
    return [np.mean([a for r in rows if r["variant"] == variant and r["seed"] == s and key in r
                     for a in r[key].values()]) for s in seeds]


def paired(a, b):
    """The protocol's own paired comparison (`protocol.paired`), on per-user accuracies, as one line."""
    p = protocol.paired({"a": {"per_user": a}, "b": {"per_user": b}}, "a", "b")
    lo, hi = p["ci95_points"]
    return (f"{p['mean_points']:+.2f} [{lo:+.2f}, {hi:+.2f}], {p['a_better']} better / {p['a_worse']} worse "
            f"({p['worse_share']:.0%}, mean {p['worse_mean_points']:+.2f})")


for v in sorted({r["variant"] for r in rows}):
    ps = per_seed(v, "generic")
    folds = [np.mean([a for r in rows if r["variant"] == v and r["fold"] == f for a in r["generic"].values()])
             for f in sorted({r["fold"] for r in rows})]
    print(f"{v}: generic {np.mean(ps) * 100:.2f} sd over seeds {np.std(ps, ddof=1) * 100:.2f}; per fold "
          + " / ".join(f"{x * 100:.1f}" for x in folds))
    if v != "base":
        print("  generic vs base:", paired(per_user(v, "generic"), per_user("base", "generic")))
    for b in ("u20", "pc5", "pc10", "pc20"):
        if any(b in r for r in rows if r["variant"] == v):
            ps = per_seed(v, b)
            print(f"  {b}: {np.mean(ps) * 100:.2f} ± {np.std(ps, ddof=1) * 100:.2f}; gain over its generic "
                  + paired(per_user(v, b), per_user(v, "generic")))
    if any("pc5" in r for r in rows if r["variant"] == v):
        print("  5 -> 10 per activity:", paired(per_user(v, "pc10"), per_user(v, "pc5")))
        print("  10 -> 20 per activity:", paired(per_user(v, "pc20"), per_user(v, "pc10")))
        if v != "base":
            print("  personalized u20 vs the base's:", paired(per_user(v, "u20"), per_user("base", "u20")))
