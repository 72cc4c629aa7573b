"""python har_ceiling_rule_analyse.py OUT/har_rule_o0.jsonl OUT/har_rule_o1.jsonl"""
import json, math, sys, collections, numpy as np
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
def decide(r, rule):
    E = r["best_epoch"]
    if E == 0 or r["epochs"] == 0: return False
    e0, eE = np.array(r["errors"][0]), np.array(r["errors"][E])
    better, worse = int((eE < e0 - 1e-12).sum()), int((eE > e0 + 1e-12).sum())
    n = len(e0); net = better - worse
    needed = max(1, math.ceil(0.1 * n - 1e-9))
    l0, lE = r["losses"][0], r["losses"][E]
    if rule == "ungated": return True
    if rule == "gate": return net >= needed
    if rule.startswith("tie"):  # gate, or a tie at the ceiling (base all right) with the loss down by >= x
        x = float(rule[3:])
        return net >= needed or (e0.sum() == 0 and eE.sum() == 0 and lE <= (1 - x) * l0)
    if rule.startswith("tieany"):
        pass
for rule in ["ungated", "gate", "tie0.1", "tie0.25", "tie0.4", "tie0.6"]:
    for b in ["u20", "pc5", "pc10", "pc20"]:
        by = collections.defaultdict(list); acc = []
        for r in rows:
            if r["budget"] != b: continue
            a = r["acc"] if decide(r, rule) else r["base"]
            by[(r["outer"], r["user"])].append((a - r["base"]) * 100); acc.append(decide(r, rule))
        d = np.array([np.mean(v) for v in by.values()]); n = len(d)
        half = 2.02 * d.std(ddof=1) / math.sqrt(n); h = d[d < -1e-9]
        print(f"{rule:8s} {b:5s} gain {d.mean():+.2f} [{d.mean()-half:+.2f},{d.mean()+half:+.2f}] harmed {len(h)}/{n} "
              f"({h.mean() if len(h) else 0:+.2f}, worst {d.min():+.2f}) updated {100*np.mean(acc):.0f} %")
