"""python har_method_analyse.py OUT/har_inner_o*.jsonl"""
import json, sys, collections, numpy as np
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
by = collections.defaultdict(list)
for r in rows:
    by[(r["variant"], r["budget"], r["outer"], r["user"])].append((r["acc"] - r["base"]) * 100)
keys = sorted({(v, b) for v, b, _, _ in by})
for v, b in keys:
    d = np.array([np.mean(x) for (vv, bb, _, _), x in by.items() if vv == v and bb == b])
    n = len(d); half = 2.09 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    harmed = d[d < -1e-9]
    nseed = np.mean([len(x) for (vv, bb, _, _), x in by.items() if vv == v and bb == b])
    print(f"{v:18s} {b:5s} gain {d.mean():+.2f} [{d.mean()-half:+.2f},{d.mean()+half:+.2f}] harmed {len(harmed)}/{n}"
          f" ({harmed.mean() if len(harmed) else 0:+.2f}, worst {d.min():+.2f}) seeds/unit {nseed:.1f}")
