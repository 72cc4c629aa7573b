import json, math, sys
from collections import defaultdict
import numpy as np
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 19: 2.093, 20: 2.086, 25: 2.060, 29: 2.045, 30: 2.042}
def t95(df):
    return 2.0 if df >= 30 else T95.get(df) or T95[max(k for k in T95 if k <= df)]
recs = [json.loads(l) for l in open(sys.argv[1])]
outers = [int(x) for x in sys.argv[2].split(",")]
recs = [r for r in recs if r["outer"] in outers]
BUD = ["pc5", "pc10", "pc20", "u20"]

def margin_of(rule, n):
    return max(1, math.ceil(float(rule[1:]) * n - 1e-9)) if rule.startswith("r") else int(rule)

def acc(r, rule):
    if rule == "none":
        return r["after"]
    E, a = r["E"], r["acc_by_epoch"]
    if E == 0 or not a:
        return r["base"]
    return r["after"] if a[E] - a[0] >= margin_of(rule, r["n_hold"]) else r["base"]

def stats(method, rule, b):
    per = defaultdict(list)
    for r in recs:
        if r["budget"] == b and r["method"] == method:
            per[(r["outer"], r["user"])].append(100 * (acc(r, rule) - r["base"]))
    return per

def summ(per):
    d = np.array([np.mean(v) for v in per.values()])
    half = t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    h = d[d < -1e-9]
    return d.mean(), d.mean() - half, d.mean() + half, (d < -1e-9).mean(), (h.mean() if len(h) else 0.0), d.min()

def step(p1, p2):
    d = np.array([np.mean(p2[k]) - np.mean(p1[k]) for k in p1])
    half = t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean()-half:+.2f},{d.mean()+half:+.2f}]"

print(f"outer folds {outers}; units {len({(r['outer'], r['user']) for r in recs})}; seeds {sorted({r['seed'] for r in recs})}")
print("\n| method | gate margin | " + " | ".join(f"{b} gain [CI] / harmed (mean harm; worst)" for b in BUD) + " | pc10-pc5 | pc20-pc10 | shipped share (pc5/pc10/pc20/u20) |")
print("|---|---|" + "---|" * (len(BUD) + 3))
for m in [m for m in ("ft_all", "ft_head") if any(r["method"] == m for r in recs)]:
    for rule in ("none", "0", "1", "2", "3", "r0.05", "r0.1", "r0.15"):
        cells, pers = [], {}
        for b in BUD:
            pers[b] = stats(m, rule, b)
            s = summ(pers[b])
            cells.append(f"{s[0]:+.2f} [{s[1]:+.2f},{s[2]:+.2f}] / {100*s[3]:.0f}% ({s[4]:+.1f}; {s[5]:+.1f})")
        shipped = []
        for b in BUD:
            rs = [r for r in recs if r["budget"] == b and r["method"] == m]
            shipped.append(np.mean([acc(r, rule) is r["after"] if rule != "none" else r["E"] > 0 for r in rs]))
        print(f"| {m} | {rule} | " + " | ".join(cells) + f" | {step(pers['pc5'], pers['pc10'])} | {step(pers['pc10'], pers['pc20'])} | " + "/".join(f"{100*x:.0f}%" for x in shipped) + " |")
