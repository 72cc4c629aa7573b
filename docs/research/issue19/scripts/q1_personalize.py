"""Q1: personalization heads on the frozen generic network's embedding, inner user-disjoint CV on
the outer fold's sharing users. Writes one JSON line per (outer, inner, seed, user, budget)."""
import json, sys, time
from common import *
from tandem.training import model
from tandem.evaluation.protocol import _convert, task_policy, BUDGETS
from tandem.release.params import DeviceUpdateConfig
from tandem.device.update_policy import personalize, holdout_rows
from tandem.training.personalization import pick_labelled

C = list(CLASSES)
NC = len(C)
KS = [1, 2, 3, 4, 5]
BLENDS = [(s, n0) for s in (10, 20) for n0 in (1, 3, 10)]


def _norm(Z):
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def emb_predict(Zl, yl, Zt, Pt):
    """{method: predicted class index (len(Zt),)} for every embedding-head method, fitted on (Zl, yl)."""
    out = {}
    present = np.unique(yl)
    mu = np.stack([Zl[yl == c].mean(0) for c in present])
    cos = _norm(Zt) @ _norm(mu).T  # (n, len(present))
    d2 = ((Zt[:, None, :] - mu[None]) ** 2).sum(-1)
    out["proto_cos"] = present[cos.argmax(1)]
    out["proto_euc"] = present[d2.argmin(1)]
    n_per = len(yl) / len(present)
    for s, n0 in BLENDS:
        e = np.exp(s * (cos - cos.max(1, keepdims=True)))
        pp = np.zeros((len(Zt), NC))
        pp[:, present] = e / e.sum(1, keepdims=True)
        w = n_per / (n_per + n0)
        out[f"blend_s{s}_n{n0}"] = ((1 - w) * Pt + w * pp).argmax(1)
    # k-NN
    Dn = _norm(Zt) @ _norm(Zl).T  # similarity
    De = -((Zt[:, None, :] - Zl[None]) ** 2).sum(-1)
    for name, S in (("cos", Dn), ("euc", De)):
        order = np.argsort(-S, axis=1)
        for k in KS:
            kk = min(k, len(yl))
            idx = order[:, :kk]
            votes = np.zeros((len(Zt), NC))
            for r in range(kk):  # vote, ties to the nearer neighbour
                np.add.at(votes, (np.arange(len(Zt)), yl[idx[:, r]]), 1.0 + 1e-3 * (kk - r))
            out[f"knn{k}_{name}"] = votes.argmax(1)
    return out


def overlap(keys):
    """(n, n) bool: windows that share samples (same session, starts < 128 apart)."""
    sess = np.array([k.split(":")[0] for k in keys]); st = np.array([int(k.split(":")[1]) for k in keys])
    return (sess[:, None] == sess[None]) & (np.abs(st[:, None] - st[None]) < 128)


def main(outers, seeds, path):
    users = load_users()
    dev = DeviceUpdateConfig()
    pol = task_policy()
    fh = open(path, "a")
    for outer in outers:
        for seed in seeds:
            for j, tr, ev in inner_folds(users, outer):
                t0 = time.time()
                S, E = sides(tr, 0.5), sides(ev, None)
                X, y, g = server_data(S)
                cfg = train_cfg(outer, seed)
                net = model.train(X, y, cfg, groups=g).model
                bases = {"ft_all": _convert(net, cfg, dev),
                         "ft_head": _convert(net, cfg.model_copy(update={"updatable_layers": ["head"]}), dev)}
                for s in E:
                    yi = s.y
                    Xt = s.X[s.test]; yt = yi[s.test]
                    Zt, Pt = embed(net, Xt), proba(net, Xt)
                    base_pred = Pt.argmax(1)
                    for b in ("pc5", "pc10", "pc20", "u20"):
                        lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
                        Xl, yl, ll = s.X[lab], yi[lab], s.user.labels[lab]
                        Zl, Pl = embed(net, Xl), proba(net, Xl)
                        rec = {"outer": outer, "inner": j, "seed": seed, "user": s.user.user_id, "budget": b,
                               "n_lab": int(len(lab)), "n_test": int(len(yt))}
                        test = {"base": float((base_pred == yt).mean())}
                        for m, p in emb_predict(Zl, yl, Zt, Pt).items():
                            test[m] = float((p == yt).mean())
                        for name, dm in bases.items():
                            p = personalize(dm, Xl, ll, pol)
                            test[name] = float((p.model.predict(Xt) == s.user.labels[s.test]).mean())
                            rec.setdefault("ft_epochs", {})[name] = p.epochs
                        rec["test"] = test
                        # split of the user's own labels: latest 1/3 per class held out
                        hold = holdout_rows(ll, pol)
                        if len(hold):
                            rest = np.setdiff1d(np.arange(len(lab)), hold)
                            sp = {"base": int((Pl[hold].argmax(1) == yl[hold]).sum())}
                            for m, p in emb_predict(Zl[rest], yl[rest], Zl[hold], Pl[hold]).items():
                                sp[m] = int((p == yl[hold]).sum())
                            for name, dm in bases.items():
                                p = personalize(dm, Xl[rest], ll[rest], pol)
                                sp[name] = int((p.model.predict(Xl[hold]) == ll[hold]).sum())
                            rec["split"], rec["n_split"] = sp, int(len(hold))
                        # leave-one-out on the labels (embedding heads only), excluding overlapping windows
                        ov = overlap([s.user.window_keys[i] for i in lab])
                        loo = {"base": int((Pl.argmax(1) == yl).sum())}
                        for i in range(len(lab)):
                            keep = ~ov[i]
                            if len(np.unique(yl[keep])) < 2:
                                continue
                            for m, p in emb_predict(Zl[keep], yl[keep], Zl[i:i + 1], Pl[i:i + 1]).items():
                                loo[m] = loo.get(m, 0) + int(p[0] == yl[i])
                        rec["loo"], rec["n_loo"] = loo, int(len(lab))
                        fh.write(json.dumps(rec) + "\n"); fh.flush()
                print(f"outer {outer} seed {seed} inner {j}: {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    outers = [int(x) for x in sys.argv[1].split(",")]
    seeds = [int(x) for x in sys.argv[2].split(",")]
    main(outers, seeds, sys.argv[3])
