"""python har_knn_analyse.py OUT/har_knn_o*.jsonl: per variant and budget, the gain over the base (points, mean
over seeds per (outer fold, user) unit, t-95 % CI over units), harmed units, what the policy chose; the growth
steps pc5 -> pc10 -> pc20 as paired differences."""
import json, sys, collections, numpy as np
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
by = collections.defaultdict(list)
chosen = collections.defaultdict(list)
for r in rows:
    by[(r["variant"], r["budget"], r["outer"], r["user"])].append((r["acc"] - r["base"]) * 100)
    chosen[(r["variant"], r["budget"])].append(r["method"])


def ci(d):
    half = 2.09 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f},{d.mean() + half:+.2f}]"


def units(v, b):
    return {(o, u): np.mean(x) for (vv, bb, o, u), x in by.items() if vv == v and bb == b}


for v in sorted({k[0] for k in by}):
    for b in ("pc5", "pc10", "pc20", "u20"):
        d = np.array(list(units(v, b).values()))
        if not len(d):
            continue
        harmed = d[d < -1e-9]
        c = collections.Counter(chosen[(v, b)])
        n = sum(c.values())
        print(f"{v:8s} {b:5s} gain {ci(d)} harmed {len(harmed)}/{len(d)} ({harmed.mean() if len(harmed) else 0:+.2f}, "
              f"worst {d.min():+.2f}) chose base {c['base'] / n:.0%} fine_tune {c['fine_tune'] / n:.0%} knn {c['knn'] / n:.0%}")
    for lo, hi in (("pc5", "pc10"), ("pc10", "pc20")):
        a, z = units(v, lo), units(v, hi)
        print(f"{v:8s} {lo}->{hi} {ci(np.array([z[k] - a[k] for k in a if k in z]))}")
