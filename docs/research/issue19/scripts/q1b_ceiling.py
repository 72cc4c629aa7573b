"""Q1b: ceiling diagnostic: what does personalization reach when EVERY pool window is labelled?
(pc5/pc10/pc20 from q1 vs pcAll, same folds and seeds.)"""
import json, sys, time
from common import *
from q1_personalize import emb_predict
from tandem.training import model
from tandem.evaluation.protocol import _convert, task_policy
from tandem.release.params import DeviceUpdateConfig
from tandem.device.update_policy import personalize
from tandem.training.personalization import pick_labelled

users = load_users(); dev = DeviceUpdateConfig(); pol = task_policy()
fh = open(sys.argv[3], "a")
for outer in [int(x) for x in sys.argv[1].split(",")]:
    for seed in [int(x) for x in sys.argv[2].split(",")]:
        for j, tr, ev in inner_folds(users, outer):
            t0 = time.time()
            S, E = sides(tr, 0.5), sides(ev, None)
            X, y, g = server_data(S)
            cfg = train_cfg(outer, seed)
            net = model.train(X, y, cfg, groups=g).model
            dm = _convert(net, cfg, dev)
            for s in E:
                Xt, yt = s.X[s.test], s.y[s.test]
                Zt, Pt = embed(net, Xt), proba(net, Xt)
                for b, kw in (("pcAll", dict(per_class=10000)), ("pcAll_contig20", dict(per_class=20, spread=False))):
                    lab = pick_labelled(s.user.labels, s.pool, **kw)
                    test = {"base": float((Pt.argmax(1) == yt).mean())}
                    for m, p in emb_predict(embed(net, s.X[lab]), s.y[lab], Zt, Pt).items():
                        if m in ("proto_cos", "knn1_euc", "knn3_euc", "knn3_cos", "blend_s10_n3", "blend_s10_n10"):
                            test[m] = float((p == yt).mean())
                    p = personalize(dm, s.X[lab], s.user.labels[lab], pol)
                    test["ft_all"] = float((p.model.predict(Xt) == s.user.labels[s.test]).mean())
                    fh.write(json.dumps({"outer": outer, "inner": j, "seed": seed, "user": s.user.user_id, "budget": b,
                                         "n_lab": int(len(lab)), "test": test}) + "\n"); fh.flush()
            print(f"outer {outer} seed {seed} inner {j}: {time.time()-t0:.0f}s", flush=True)
