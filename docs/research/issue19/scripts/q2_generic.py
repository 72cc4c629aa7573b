"""Q2: generic-model variants under inner user-disjoint CV on one outer fold's sharing users.
One JSON line per (outer, inner, seed, variant) with per-user accuracy on the inner-eval users' test windows."""
import copy, json, sys, time
from common import *
from tandem.contract.features import featurize
from tandem.training import model
from tandem.training.model import split_indices, STD_FLOOR, Classifier

# ---------------- raw-window transforms and extra features ----------------

def random_rotations(n, max_deg, rng):
    axis = rng.normal(size=(n, 3)); axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    th = np.deg2rad(rng.uniform(0, max_deg, size=n)) if max_deg < 180 else None
    if th is None:  # uniform on SO(3) via random quaternions
        q = rng.normal(size=(n, 4)); q /= np.linalg.norm(q, axis=1, keepdims=True)
        w, x, y, z = q.T
        return np.stack([np.stack([1-2*(y*y+z*z), 2*(x*y-z*w), 2*(x*z+y*w)], -1),
                         np.stack([2*(x*y+z*w), 1-2*(x*x+z*z), 2*(y*z-x*w)], -1),
                         np.stack([2*(x*z-y*w), 2*(y*z+x*w), 1-2*(x*x+y*y)], -1)], 1)
    K = np.zeros((n, 3, 3)); a = axis
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 0], K[:, 1, 2], K[:, 2, 0], K[:, 2, 1] = -a[:, 2], a[:, 1], a[:, 2], -a[:, 0], -a[:, 1], a[:, 0]
    s, c = np.sin(th)[:, None, None], np.cos(th)[:, None, None]
    return np.eye(3)[None] + s * K + (1 - c) * K @ K

def rotate(windows, R):
    out = windows.copy()
    out[:, :, 0:3] = np.einsum("nij,ntj->nti", R, windows[:, :, 0:3])
    out[:, :, 3:6] = np.einsum("nij,ntj->nti", R, windows[:, :, 3:6])
    return out

BANDS = [(1, 3), (4, 6), (7, 12), (13, 24), (25, 64)]

def gravity_frame_features(windows):
    """Orientation-invariant features: body acc and gyro split into the component along the window's
    mean gravity direction and the horizontal remainder; stats + spectral band energies of each."""
    acc, gyr = windows[:, :, 0:3], windows[:, :, 3:6]
    g = acc.mean(1); gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    body = acc - g[:, None, :]
    sigs = {}
    for name, v in (("acc", body), ("gyr", gyr)):
        vert = np.einsum("ntc,nc->nt", v, gn)
        hor = np.linalg.norm(v - vert[:, :, None] * gn[:, None, :], axis=2)
        sigs[name + "_v"], sigs[name + "_h"] = vert, hor
    sigs["acc_norm"] = np.linalg.norm(acc, axis=2)
    feats = []
    for s in sigs.values():
        q75, q25 = np.percentile(s, [75, 25], axis=1)
        feats += [s.mean(1), s.std(1), s.min(1), s.max(1), q75 - q25]
        sp = np.abs(np.fft.rfft(s - s.mean(1, keepdims=True), axis=1)) ** 2 / s.shape[1]
        feats += [np.log1p(sp[:, a:b + 1].sum(1)) for a, b in BANDS]
    feats.append(np.linalg.norm(g, axis=1))
    return np.stack(feats, 1)

# ---------------- a training loop equal to model.train, with options ----------------

def train2(X, y, groups, cfg, extra=None, noise=0.0, mixup=0.0, n_classes=6):
    """model.train (same split, init, stopping) plus: `extra` = (Xa, ya, ga) augmented rows added to the
    training part only (rows whose group is a training group); Gaussian input noise (in standardized
    units); mixup with Beta(mixup, mixup)."""
    X = np.asarray(X, np.float64); y = np.asarray(y, np.int64)
    tr, va = split_indices(y, cfg.validation_fraction, cfg.seed, groups)
    Xtr, ytr = X[tr], y[tr]
    if extra is not None:
        Xa, ya, ga = extra
        keep = np.isin(ga, np.unique(groups[tr]))
        Xtr, ytr = np.concatenate([Xtr, Xa[keep]]), np.concatenate([ytr, ya[keep]])
    mean = X[tr].mean(0); std = np.maximum(X[tr].std(0), STD_FLOOR)
    torch.manual_seed(cfg.seed)
    net = Classifier(X.shape[1], n_classes, cfg.hidden_sizes, mean, std, cfg.dropout)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    Xt = torch.as_tensor(Xtr, dtype=torch.float32); yt = torch.as_tensor(ytr)
    Xv = torch.as_tensor(X[va], dtype=torch.float32); yv = torch.as_tensor(y[va])
    stdt = torch.as_tensor(std, dtype=torch.float32)
    best, best_loss, wait = copy.deepcopy(net.state_dict()), float("inf"), 0
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(yt), generator=gen)
        for st in range(0, len(order), cfg.batch_size):
            b = order[st:st + cfg.batch_size]
            xb, yb = Xt[b], yt[b]
            if noise:
                xb = xb + noise * stdt * torch.randn(xb.shape, generator=gen)
            if mixup:
                lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(mixup, mixup))
                perm = torch.randperm(len(b), generator=gen)
                out = net(lam * xb + (1 - lam) * xb[perm])
                loss = lam * torch.nn.functional.cross_entropy(out, yb, label_smoothing=cfg.label_smoothing) + \
                    (1 - lam) * torch.nn.functional.cross_entropy(out, yb[perm], label_smoothing=cfg.label_smoothing)
            else:
                loss = torch.nn.functional.cross_entropy(net(xb), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(); loss.backward(); opt.step()
        net.eval()
        with torch.no_grad():
            vl = float(torch.nn.functional.cross_entropy(net(Xv), yv))
        if vl < best_loss:
            best_loss, wait, best = vl, 0, copy.deepcopy(net.state_dict())
        else:
            wait += 1
            if wait >= cfg.patience:
                break
    net.load_state_dict(best); net.eval()
    return net


def per_user_acc(P, E, rows):
    out, o = {}, 0
    for s in E:
        n = len(s.test)
        out[s.user.user_id] = float((P[o:o + n].argmax(1) == s.y[s.test]).mean()); o += n
    return out


def main(outers, seeds, path, only=None):
    users = load_users()
    fh = open(path, "a")
    for outer in outers:
        for seed in seeds:
            for j, tr, ev in inner_folds(users, outer):
                S, E = sides(tr, 0.5), sides(ev, None)
                X, y, g = server_data(S)
                W = np.concatenate([s.user.windows[s.shared] for s in S])
                Xte = np.concatenate([s.X[s.test] for s in E])
                Wte = np.concatenate([s.user.windows[s.test] for s in E])
                cfg = train_cfg(outer, seed)
                rng = np.random.default_rng(1000 + seed)
                res = {}

                def run(name, fn):
                    if only and name not in only:
                        return
                    t = time.time(); P = fn(); res[name] = (per_user_acc(P, E, None), time.time() - t)

                run("current", lambda: proba(model.train(X, y, cfg, groups=g).model, Xte))
                run("current_loop2", lambda: proba(train2(X, y, g, cfg), Xte))
                for hs in ([256], [512], [128, 64], [256, 128]):
                    run("h" + "_".join(map(str, hs)), lambda hs=hs: proba(model.train(X, y, cfg.model_copy(update={"hidden_sizes": hs, "updatable_layers": ["head"]}), groups=g).model, Xte))
                run("long400", lambda: proba(model.train(X, y, cfg.model_copy(update={"epochs": 400, "patience": 80}), groups=g).model, Xte))
                for nz in (0.1, 0.3):
                    run(f"noise{nz}", lambda nz=nz: proba(train2(X, y, g, cfg, noise=nz), Xte))
                run("mixup0.2", lambda: proba(train2(X, y, g, cfg, mixup=0.2), Xte))
                for deg in (15, 45, 180):
                    def rot(deg=deg):
                        Wa = np.concatenate([rotate(W, random_rotations(len(W), deg, rng)) for _ in range(2)])
                        Xa = featurize(Wa)
                        return proba(train2(X, y, g, cfg, extra=(Xa, np.concatenate([y, y]), np.concatenate([g, g]))), Xte)
                    run(f"rot{deg}x2", rot)
                Gtr, Gte = gravity_frame_features(W), gravity_frame_features(Wte)
                run("gfeat", lambda: proba(model.train(np.hstack([X, Gtr]), y, cfg, groups=g).model, np.hstack([Xte, Gte])))
                def gfeat_rot(deg=45, copies=2):
                    Wa = np.concatenate([rotate(W, random_rotations(len(W), deg, rng)) for _ in range(copies)])
                    Xa = np.hstack([featurize(Wa), gravity_frame_features(Wa)])
                    return proba(train2(np.hstack([X, Gtr]), y, g, cfg, extra=(Xa, np.concatenate([y] * copies), np.concatenate([g] * copies))), np.hstack([Xte, Gte]))
                run("gfeat_rot45x2", gfeat_rot)
                run("gfeat_rot15x2", lambda: gfeat_rot(15, 2))
                run("gfeat_rot30x4", lambda: gfeat_rot(30, 4))
                run("ens5", lambda: np.mean([proba(model.train(X, y, cfg.model_copy(update={"seed": seed + 100 * k}), groups=g).model, Xte) for k in range(5)], 0))
                from sklearn.linear_model import LogisticRegression
                from sklearn.svm import LinearSVC
                from sklearn.preprocessing import StandardScaler
                from sklearn.pipeline import make_pipeline
                def onehot(pred):
                    P = np.zeros((len(pred), 6)); P[np.arange(len(pred)), pred] = 1; return P
                for C in (0.1, 1.0):
                    run(f"logreg_C{C}", lambda C=C: make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)).fit(X, y).predict_proba(Xte))
                    run(f"linsvm_C{C}", lambda C=C: onehot(make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=20000)).fit(X, y).predict(Xte)))
                for name, (acc, sec) in res.items():
                    fh.write(json.dumps({"outer": outer, "seed": seed, "inner": j, "variant": name, "per_user": acc, "seconds": sec}) + "\n")
                fh.flush()
                print(f"outer {outer} seed {seed} inner {j}: " + ", ".join(f"{k} {np.mean(list(v[0].values())):.3f}" for k, v in res.items()), flush=True)


if __name__ == "__main__":
    outers = [int(x) for x in sys.argv[1].split(",")]
    seeds = [int(x) for x in sys.argv[2].split(",")]
    main(outers, seeds, sys.argv[3], sys.argv[4].split(",") if len(sys.argv) > 4 else None)
