"""python har_features_analyse.py OUT/har_feat.jsonl"""
import json, sys, collections, numpy as np
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows: by[r["variant"]][(r["outer"], r["user"])].append(r["acc"] * 100)
cur = {k: np.mean(v) for k, v in by["current"].items()}
for v, d in by.items():
    m = {k: np.mean(x) for k, x in d.items()}
    diff = np.array([m[k] - cur[k] for k in cur if k in m]); n = len(diff)
    half = 2.02 * diff.std(ddof=1) / np.sqrt(n) if n > 1 else 0
    nf = [r["n_features"] for r in rows if r["variant"] == v][0]
    print(f"{v:45s} {nf:4d} feats  acc {np.mean(list(m.values())):.2f}  diff {diff.mean():+.2f} [{diff.mean()-half:+.2f},{diff.mean()+half:+.2f}] better/worse {(diff>1e-9).sum()}/{(diff<-1e-9).sum()}")
