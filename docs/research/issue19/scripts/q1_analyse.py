import os
"""Q1 analysis: gain vs base per method and budget; per-user selection rules."""
import json, math, sys
from collections import defaultdict
import numpy as np

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 19: 2.093, 20: 2.086, 25: 2.060, 29: 2.045, 30: 2.042}
def t95(df):
    return 2.0 if df >= 30 else T95.get(df) or T95[max(k for k in T95 if k <= df)]

recs = [json.loads(l) for l in open(sys.argv[1])]
outers = sorted({r["outer"] for r in recs}) if len(sys.argv) < 3 else [int(x) for x in sys.argv[2].split(",")]
recs = [r for r in recs if r["outer"] in outers]
BUD = ["pc5", "pc10", "pc20", "u20"]

def select(r, cands, src, margin):
    sc = r.get(src)
    if sc is None:
        return "base"
    if isinstance(margin, str):  # "r0.1": max(1, ceil(0.1 * held-out windows))
        margin = max(1, math.ceil(float(margin[1:]) * r["n_" + src] - 1e-9))
    best, bv = "base", sc["base"] + margin - 1  # a candidate must beat base by >= margin windows
    for c in cands:
        if c in sc and sc[c] > bv:
            best, bv = c, sc[c]
    return best

def acc(r, m):
    if m.startswith("sel:"):
        _, src, margin, cands = m.split(":")
        return r["test"][select(r, cands.split("+"), src, margin if margin.startswith("r") else int(margin))]
    return r["test"][m]

def stats(m, b):
    """per (outer,user) mean over seeds of acc(m) - acc(base), points."""
    per = defaultdict(list); runs = []
    for r in recs:
        if r["budget"] != b: continue
        d = 100 * (acc(r, m) - r["test"]["base"])
        per[(r["outer"], r["user"])].append(d); runs.append(d)
    d = np.array([np.mean(v) for v in per.values()]); runs = np.array(runs)
    half = t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    harmed = d[d < -1e-9]
    return dict(mean=d.mean(), lo=d.mean() - half, hi=d.mean() + half, n=len(d), harm_share=(d < -1e-9).mean(),
                harm_mean=harmed.mean() if len(harmed) else 0.0, worst=d.min(), run_harm=(runs < -1e-9).mean(), per=per)

def growth(m, b1, b2):
    s1, s2 = stats(m, b1)["per"], stats(m, b2)["per"]
    d = np.array([np.mean(s2[k]) - np.mean(s1[k]) for k in s1])
    half = t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half

def table(methods, title):
    print(f"\n### {title}\n")
    print("| method | budget | gain pts | 95% CI | users harmed | mean harm (harmed) | worst | runs harmed |")
    print("|---|---|---|---|---|---|---|---|")
    for m in methods:
        for b in BUD:
            s = stats(m, b)
            print(f"| {m} | {b} | {s['mean']:+.2f} | [{s['lo']:+.2f}, {s['hi']:+.2f}] | {s['harm_share']*100:.0f}% | {s['harm_mean']:+.2f} | {s['worst']:+.2f} | {s['run_harm']*100:.0f}% |")

def compact(methods, title):
    print(f"\n### {title}\n")
    print("| method | " + " | ".join(f"{b} gain [CI] / harmed" for b in BUD) + " | pc10-pc5 [CI] | pc20-pc10 [CI] |")
    print("|---|" + "---|" * (len(BUD) + 2))
    for m in methods:
        cells = []
        for b in BUD:
            s = stats(m, b)
            cells.append(f"{s['mean']:+.2f} [{s['lo']:+.2f},{s['hi']:+.2f}] / {s['harm_share']*100:.0f}% ({s['harm_mean']:+.1f})")
        g1, g2 = growth(m, "pc5", "pc10"), growth(m, "pc10", "pc20")
        cells += [f"{g1[0]:+.2f} [{g1[1]:+.2f},{g1[2]:+.2f}]", f"{g2[0]:+.2f} [{g2[1]:+.2f},{g2[2]:+.2f}]"]
        print(f"| {m} | " + " | ".join(cells) + " |")

def report():
    """The RESULTS.md selection of methods."""
    singles = ["ft_all", "ft_head", "proto_cos", "proto_euc", "blend_s10_n1", "blend_s10_n3", "blend_s10_n10",
               "knn1_euc", "knn3_euc", "knn5_euc", "knn1_cos", "knn3_cos"]
    sels = ["sel:split:1:ft_all", "sel:split:r0.05:ft_all", "sel:split:r0.1:ft_all", "sel:split:r0.15:ft_all",
            "sel:split:3:ft_all", "sel:split:r0.1:ft_head", "sel:split:r0.1:ft_all+proto_cos",
            "sel:split:r0.1:ft_all+blend_s10_n3", "sel:split:r0.1:ft_all+proto_cos+blend_s10_n3+knn3_cos",
            "sel:split:r0.1:proto_cos", "sel:split:r0.1:knn1_euc", "sel:split:r0.1:knn3_euc",
            "sel:loo:2:proto_cos", "sel:loo:3:blend_s10_n3"]
    n_users = len({(r['outer'], r['user']) for r in recs}); seeds = sorted({r['seed'] for r in recs})
    base = {b: round(100 * np.mean([r['test']['base'] for r in recs if r['budget'] == b]), 2) for b in BUD}
    print(f"outer folds {outers}; (outer fold, user) units {n_users}; seeds {seeds}; base accuracy {base['pc5']} %")
    compact(singles, "single methods: gain vs base (points), [95% CI], harmed users (mean loss of the harmed)")
    compact(sels, "per-user selection: sel:source:margin:candidates")

if __name__ == "__main__" and os.environ.get("REPORT"):
    report()
elif __name__ == "__main__":
    n_users = len({(r['outer'], r['user']) for r in recs}); seeds = sorted({r['seed'] for r in recs})
    print(f"records {len(recs)}, outer folds {outers}, (outer,user) units {n_users}, seeds {seeds}")
    base = {b: np.mean([r['test']['base'] for r in recs if r['budget'] == b]) for b in BUD}
    print("base accuracy (inner-eval users' test windows):", {b: round(100 * v, 2) for b, v in base.items()})
    ms = list(recs[0]["test"].keys()); ms.remove("base")
    compact(ms, "every single method (gain vs base, points; harmed share of (outer,user) units after averaging seeds; (mean harm of the harmed))")
    E = ["proto_cos", "blend_s10_n3", "blend_s20_n3", "blend_s10_n10", "knn3_cos"]
    sels = []
    for src in ("split", "loo"):
        for mg in (1, 2, 3):
            for cands in (["ft_all"], ["proto_cos"], ["blend_s10_n3"], ["ft_all", "proto_cos"], ["ft_all", "blend_s10_n3"],
                          ["ft_all", "proto_cos", "blend_s10_n3", "knn3_cos"], ["ft_head", "proto_cos", "blend_s10_n3"]):
                if src == "loo" and any(c.startswith("ft") for c in cands):
                    continue
                sels.append(f"sel:{src}:{mg}:{'+'.join(cands)}")
    for f in ("r0.05", "r0.1", "r0.15"):
        for cands in (["ft_all"], ["ft_head"], ["ft_all", "proto_cos"], ["ft_all", "blend_s10_n3"], ["knn3_euc"], ["knn1_euc"]):
            sels.append(f"sel:split:{f}:{'+'.join(cands)}")
    if len(sys.argv) > 3:
        sels = [x for x in sels if any(k in x for k in sys.argv[3].split(","))]
    compact(sels, "per-user selection (sel:source:margin-in-windows:candidates; base kept unless the best candidate beats it by >= margin held-out windows)")
