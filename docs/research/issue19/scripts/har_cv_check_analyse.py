"""python har_cv_check_analyse.py OUT/har_cv_check_o*.jsonl
Per check and budget: the gain over the base (points; per (outer, user) over seeds, 95 % t CI), the
harmed units, and the paired difference to the shipped check."""
import collections, json, math, sys
import numpy as np
from tandem.evaluation.protocol import _t95

rows = [json.loads(line) for path in sys.argv[1:] for line in open(path)]
gain = collections.defaultdict(list)
for r in rows:
    for check, acc in r["acc"].items():
        gain[(check, r["budget"], r["outer"], r["user"])].append((acc - r["base"]) * 100)


def ci(d):
    half = _t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"


for b in sorted({k[1] for k in gain}):
    units = sorted({(k[2], k[3]) for k in gain if k[1] == b})
    shipped = np.array([np.mean(gain[("shipped", b, *u)]) for u in units])
    for check in sorted({k[0] for k in gain}):
        d = np.array([np.mean(gain[(check, b, *u)]) for u in units])
        harmed = d[d < -1e-9]
        print(f"{b:5s} {check:10s} gain {ci(d)}  harmed {len(harmed)}/{len(d)} (mean {harmed.mean() if len(harmed) else 0:+.2f}, "
              f"worst {d.min():+.2f})  vs shipped {ci(d - shipped)}")
