import json, sys
from collections import defaultdict
import numpy as np
q1 = [json.loads(l) for l in open(sys.argv[1])]
q1b = [json.loads(l) for l in open(sys.argv[2])]
cells = {(r["outer"], r["seed"], r["user"]) for r in q1b}
rows = [r for r in q1 if (r["outer"], r["seed"], r["user"]) in cells] + q1b
M = ["ft_all", "proto_cos", "blend_s10_n3", "knn1_euc", "knn3_euc"]
print(f"cells (outer,seed,user): {len(cells)}; outers {sorted({c[0] for c in cells})}, seeds {sorted({c[1] for c in cells})}")
nl = defaultdict(list)
for r in rows: nl[r["budget"]].append(r["n_lab"])
print("\n| budget | labelled windows (mean) | " + " | ".join(f"{m} gain" for m in M) + " |")
print("|---|---|" + "---|" * len(M))
for b in ("pc5", "pc10", "pc20", "pcAll_contig20", "pcAll"):
    g = {m: np.mean([100 * (r["test"][m] - r["test"]["base"]) for r in rows if r["budget"] == b]) for m in M}
    print(f"| {b} | {np.mean(nl[b]):.0f} | " + " | ".join(f"{g[m]:+.2f}" for m in M) + " |")
