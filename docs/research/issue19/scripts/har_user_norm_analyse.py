"""python har_user_norm_analyse.py OUT/har_user_norm_policy_o*.jsonl (har_user_norm_policy.py, har_rot_center.py):
per variant, the generic model and the shipped policy's personalization (points; per (outer fold, user) unit the
mean over seeds, t-95 % CI over units): generic vs `current`, gain over its own generic and harmed units per
budget, the personalized model vs current's personalized model, and the growth steps pc5 -> pc10 -> pc20."""
import json, os, sys, collections, numpy as np
from tandem.evaluation.protocol import _t95

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
cells = collections.defaultdict(list)
for r in rows:
    cells[(r["variant"], r["budget"], r["outer"], r["user"])].append((r["base"] * 100, r["acc"] * 100))
units = sorted({(r["outer"], r["user"]) for r in rows})


def ci(d):
    half = _t95(len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"


def per_unit(v, b, which):  # which 0: the generic model, 1: the personalized one
    return np.array([np.mean([c[which] for c in cells[(v, b, *u)]]) for u in units])


current = per_unit("current", "u20", 0)
print("| variant | generic | vs current | budget | gain over its generic | harmed (mean) | personalized | vs current's personalized |")
print("|---|---|---|---|---|---|---|---|")
for v in dict.fromkeys(r["variant"] for r in rows):
    generic = per_unit(v, "u20", 0)
    for b in ("u20", "pc5", "pc10", "pc20"):
        acc = per_unit(v, b, 1)
        gain = acc - generic
        harmed = gain[gain < -1e-9]
        print(f"| {v} | {generic.mean():.2f} | {ci(generic - current)} | {b} | {ci(gain)} | {len(harmed)} of {len(gain)} "
              f"({harmed.mean() if len(harmed) else 0:+.2f}) | {acc.mean():.2f} | {ci(acc - per_unit('current', b, 1))} |")
    print(f"| {v} | | | growth | pc5->pc10 {ci(per_unit(v, 'pc10', 1) - per_unit(v, 'pc5', 1))}; "
          f"pc10->pc20 {ci(per_unit(v, 'pc20', 1) - per_unit(v, 'pc10', 1))} | | | |")

if "PLOT" in os.environ:  # PLOT=path.png: generic accuracy against the gain
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for v in dict.fromkeys(r["variant"] for r in rows):
        generic, acc = per_unit(v, "u20", 0), per_unit(v, "u20", 1)
        half = _t95(len(units) - 1) * (acc - generic).std(ddof=1) / np.sqrt(len(units))
        ax.errorbar(generic.mean(), (acc - generic).mean(), yerr=half, fmt="o", capsize=3)
        ax.annotate(f"{v}\npersonalized {acc.mean():.1f} %", (generic.mean(), (acc - generic).mean()),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("generic accuracy on inner-evaluation users, %")
    ax.set_ylabel("gain at 20 labels / user, points (95 % CI)")
    ax.set_title("HAR inner CV (sharing users, outer folds 0+1, 3 seeds, 40 units)", fontsize=9)
    ax.axhline(3, ls=":", c="grey"); ax.text(ax.get_xlim()[0], 3.1, " issue target +3", fontsize=7, color="grey")
    fig.tight_layout(); fig.savefig(os.environ["PLOT"], dpi=110)
