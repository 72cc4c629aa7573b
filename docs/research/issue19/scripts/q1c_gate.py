"""Q1c: the gate as the app could run it at zero extra cost: the policy's own task A (fit on the
labelled windows minus the latest third per class, early stopping on held-out cross-entropy) also
records held-out ACCURACY per epoch; ship task B's model only if accuracy at the chosen epoch E beats
epoch 0 (the base) by >= margin held-out windows; else keep the base."""
import json, sys, time
from common import *
from tandem.training import model
from tandem.evaluation.protocol import _convert, task_policy, BUDGETS
from tandem.release.params import DeviceUpdateConfig
import tandem.device.update_policy as up
from tandem.training.personalization import pick_labelled

REC = []
_orig_epoch_loss = up.epoch_loss
def epoch_loss(predict, Xv, yv, class_labels):
    out = np.asarray(predict(Xv))
    REC.append(int((np.asarray(class_labels)[out.argmax(1)] == np.asarray(yv)).sum()))
    return _orig_epoch_loss(lambda _: out, Xv, yv, class_labels)
up.epoch_loss = epoch_loss
_orig_held = up.held_out_loss
def held_out_loss(model_, Xv, yv):  # epoch 0: the base on the held-out rows
    P = model_.predict_proba(Xv)
    REC.append(int((np.asarray(model_.class_labels)[P.argmax(1)] == np.asarray(yv)).sum()))
    return _orig_held(model_, Xv, yv)
up.held_out_loss = held_out_loss

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
            for lname, layers in (("ft_all", cfg.updatable_layers), ("ft_head", ["head"])):
                dm = _convert(net, cfg.model_copy(update={"updatable_layers": layers}), dev)
                for s in E:
                    Xt, lt = s.X[s.test], s.user.labels[s.test]
                    base_acc = float((dm.predict(Xt) == lt).mean())
                    for b in ("pc5", "pc10", "pc20", "u20"):
                        lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
                        REC.clear()
                        p = up.personalize(dm, s.X[lab], s.user.labels[lab], pol)
                        hold = p.holdout  # REC[e]: held-out windows right after e epochs of task A (0: base)
                        fh.write(json.dumps({"outer": outer, "inner": j, "seed": seed, "user": s.user.user_id,
                                             "budget": b, "method": lname, "E": p.epochs, "n_hold": len(hold),
                                             "acc_by_epoch": list(REC), "base": base_acc,
                                             "after": float((p.model.predict(Xt) == lt).mean()),
                                             "lab": lab.tolist()}) + "\n")
            fh.flush()
            print(f"outer {outer} seed {seed} inner {j}: {time.time()-t0:.0f}s", flush=True)
