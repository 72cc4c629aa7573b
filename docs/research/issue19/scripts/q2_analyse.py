import json, math, sys
from collections import defaultdict
import numpy as np
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 19: 2.093, 20: 2.086, 25: 2.060, 29: 2.045, 30: 2.042}
def t95(df):
    return 2.0 if df >= 30 else T95.get(df) or T95[max(k for k in T95 if k <= df)]
recs, seen = [], set()
for f in sys.argv[1:]:
    for l in open(f):
        r = json.loads(l)
        k = (r["outer"], r["seed"], r["inner"], r["variant"])
        if k not in seen:
            seen.add(k); recs.append(r)
import os
if os.environ.get("OUTERS"):
    keep = [int(x) for x in os.environ["OUTERS"].split(",")]
    recs = [r for r in recs if r["outer"] in keep]
outers = sorted({r["outer"] for r in recs})
# keep only complete (outer, seed) = 4 inner folds for every variant
acc = defaultdict(dict)  # variant -> (outer, seed, user) -> acc
secs = defaultdict(list)
for r in recs:
    for u, a in r["per_user"].items():
        acc[r["variant"]][(r["outer"], r["seed"], u)] = a
    secs[r["variant"]].append(r["seconds"])
ref = acc["current"]
# only (outer, seed) with all 4 inner folds (every inner-eval user) present
from collections import Counter
n_inner = Counter((r["outer"], r["seed"]) for r in recs if r["variant"] == "current")
done = {k for k, n in n_inner.items() if n == 4}
ref = {k: v for k, v in ref.items() if (k[0], k[1]) in done}
print(f"outer folds {outers}; seeds {sorted({k[1] for k in ref})}; (outer,seed,user) cells {len(ref)}")
print("\n| variant | generic acc % (mean) | sd over seeds | diff vs current, pts [95% CI over (outer,user)] | users better/worse | s per fit | cells (seed x user) |")
print("|---|---|---|---|---|---|---|")
for v, d in acc.items():
    keys = [k for k in ref if k in d]
    if not keys:
        continue
    seeds = sorted({k[1] for k in keys})
    per_seed = [np.mean([d[k] for k in keys if k[1] == s]) for s in seeds]
    pu = defaultdict(list)
    for k in keys:
        pu[(k[0], k[2])].append(d[k] - ref[k])
    x = np.array([np.mean(v_) for v_ in pu.values()]) * 100
    half = t95(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)) if x.std() > 0 else 0
    print(f"| {v} | {100*np.mean(per_seed):.2f} | {100*np.std(per_seed, ddof=1) if len(seeds)>1 else 0:.2f} | {x.mean():+.2f} [{x.mean()-half:+.2f}, {x.mean()+half:+.2f}] | {(x>1e-9).sum()}/{(x<-1e-9).sum()} | {np.mean(secs[v]):.1f} | {len(keys)} |")
