"""Q1d: the gated fine-tune on top of the improved generic model (gravity-frame features + rotation
augmentation +-45 deg x2): does personalization still add >= 3 points when the base is better?"""
import json, sys, time
from common import *
from tandem.contract.features import featurize
from tandem.training import model
from tandem.evaluation.protocol import _convert, task_policy, BUDGETS
from tandem.release.params import DeviceUpdateConfig
import tandem.device.update_policy as up
from tandem.training.personalization import pick_labelled
from q2_generic import train2, rotate, random_rotations, gravity_frame_features

REC = []
_el, _hl = up.epoch_loss, up.held_out_loss
def epoch_loss(predict, Xv, yv, class_labels):
    out = np.asarray(predict(Xv)); REC.append(int((np.asarray(class_labels)[out.argmax(1)] == np.asarray(yv)).sum()))
    return _el(lambda _: out, Xv, yv, class_labels)
def held_out_loss(m, Xv, yv):
    P = m.predict_proba(Xv); REC.append(int((np.asarray(m.class_labels)[P.argmax(1)] == np.asarray(yv)).sum()))
    return _hl(m, Xv, yv)
up.epoch_loss, up.held_out_loss = epoch_loss, held_out_loss

users = load_users(); dev = DeviceUpdateConfig(); pol = task_policy()
G = {u.user_id: gravity_frame_features(u.windows) for u in users}
fh = open(sys.argv[3], "a")
for outer in [int(x) for x in sys.argv[1].split(",")]:
    for seed in [int(x) for x in sys.argv[2].split(",")]:
        for j, tr, ev in inner_folds(users, outer):
            t0 = time.time(); rng = np.random.default_rng(1000 + seed)
            S, E = sides(tr, 0.5), sides(ev, None)
            X, y, g = server_data(S)
            W = np.concatenate([s.user.windows[s.shared] for s in S])
            Gtr = np.concatenate([G[s.user.user_id][s.shared] for s in S])
            cfg = train_cfg(outer, seed)
            Wa = np.concatenate([rotate(W, random_rotations(len(W), 45, rng)) for _ in range(2)])
            Xa = np.hstack([featurize(Wa), gravity_frame_features(Wa)])
            net = train2(np.hstack([X, Gtr]), y, g, cfg, extra=(Xa, np.concatenate([y, y]), np.concatenate([g, g])))
            dm = _convert(net, cfg, dev)
            for s in E:
                XX = np.hstack([s.X, G[s.user.user_id]])
                Xt, lt = XX[s.test], s.user.labels[s.test]
                base_acc = float((dm.predict(Xt) == lt).mean())
                for b in ("pc5", "pc10", "pc20", "u20"):
                    lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
                    REC.clear()
                    p = up.personalize(dm, XX[lab], s.user.labels[lab], pol)
                    fh.write(json.dumps({"outer": outer, "inner": j, "seed": seed, "user": s.user.user_id, "budget": b,
                                         "method": "ft_all", "E": p.epochs, "n_hold": len(p.holdout),
                                         "acc_by_epoch": list(REC), "base": base_acc,
                                         "after": float((p.model.predict(Xt) == lt).mean())}) + "\n")
            fh.flush()
            print(f"outer {outer} seed {seed} inner {j}: base {np.mean([1]):.0f} {time.time()-t0:.0f}s", flush=True)
