"""`tandem audit`: per sharing form, what the users are promised and what an attacker still gets.

Same fleet protocol as `tandem evaluate` (every `holdout_every`-th user never shares; per session and
class the earlier half of each user's windows is the local pool, the later half the test set);
each sharing user shares the same stable `fraction` of its pool. Per form (pseudonymized,
anonymized, the v1 Laplace form, local DP with Piecewise/Duchi at several per-user epsilons,
user-level DP-SGD) it trains the server's model in memory and measures:

- the per-user guarantee (epsilon at `delta`, dp-accounting PLD over all of a user's windows) and,
  for DP-SGD, the model's user-level guarantee;
- generic and personalized accuracy on the never-sharing users (20 labelled windows each, the
  device runtime's update, as in `tandem evaluate`);
- linkage (re-identification) of a never-seen batch from the shared features, against chance;
  attribute inference of the quasi-identifiers through that link;
- membership inference against the released model: loss threshold (windows: shared vs the same
  users' unshared windows; users: sharing vs never-sharing users) and shadow models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from tandem.contract import features
from tandem.device.runtime import DeviceModel
from tandem.evaluation import privacy_attacks as attacks
from tandem.evaluation.experiment import EvaluationParams
from tandem.evaluation.simulation import subset
from tandem.fleet import users as fleet
from tandem.fleet.sharing import shared_mask, window_ids
from tandem.privacy import dp_accountant
from tandem.privacy import ldp_mechanisms as ldp
from tandem.privacy.policy import SharingPolicy, clip_bounds, generalize, privatize
from tandem.release.params import RunParams
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import model
from tandem.training.dp_sgd import train_user_level
from tandem.training.dp_sgd_params import DpSgdConfig
from tandem.training.personalization import local_split, pick_labelled, update_and_score
from tandem.training.pretrain import convert

# A lower-dimensional release, chosen a priori (no data spent on choosing): the gravity direction
# (posture) and how much the phone moves (movement intensity). Issue 12 chose these on the 46-feature
# vector (acc_{x,y,z}_mean, acc_mag_{std,max,mad_diff}); these are their counterparts among the 157.
LOW_DIM_FEATURES = ("gravity_x_mean", "gravity_y_mean", "gravity_z_mean", "body_mag_std", "body_jerk_mag_mean",
                    "gyro_mag_mean", "gyro_mag_std", "body_mag_max")
AUDIT_KEY = b"tandem-audit-device-key (simulation only)"


class LdpPoint(BaseModel):
    """One local DP form of the audit: a mechanism at a per-user epsilon over a number of windows."""

    mechanism: Literal["piecewise", "duchi"] = "piecewise"
    user_epsilon: float = Field(8.0, gt=0, description="per-user epsilon over all the user's shared windows")
    windows_per_user: int = Field(12, ge=1, description="windows each user shares (spread over classes and time)")
    low_dim: bool = Field(False, description="release only the a-priori LOW_DIM_FEATURES instead of all features")


class AuditParams(BaseModel):
    """One privacy audit (`tandem audit`; a step of `tandem evaluate`)."""

    source: Literal["task", "synthetic"] = Field("task", description="task (the task's data set) or synthetic (fast)")
    synthetic_users: int = Field(12, ge=6, le=200)
    synthetic_windows_per_class: int = Field(16, ge=6, le=500)
    holdout_every: int = Field(3, ge=2, description="every N-th user never shares")
    fraction: float = Field(0.5, gt=0, le=1, description="fraction of its local pool a sharing user shares")
    train: model.TrainConfig = Field(default_factory=model.TrainConfig)
    per_user_budget: int = Field(20, ge=1, description="labelled windows per evaluation user for personalization")
    update_epochs: int = Field(50, ge=1, le=100)
    update_learning_rate: float = Field(0.003, gt=0, le=1)
    delta: float = Field(1e-6, gt=0, lt=1, description="delta of every stated (epsilon, delta)")
    batch_windows: int = Field(32, ge=1, description="linkage: a user's last windows arrive as a never-seen batch")
    shadows: int = Field(1, ge=1, le=10, description="shadow models per form")
    laplace_window_epsilons: list[float] = Field(default_factory=lambda: [10.0],
                                                 description="v1 dp form: per-window epsilon (features 0.8, label 0.2)")
    ldp: list[LdpPoint] = Field(default_factory=lambda: [
        *[LdpPoint(mechanism="piecewise", user_epsilon=e, low_dim=low) for e in (8.0, 64.0, 512.0, 4096.0)
          for low in (False, True)],
        *[LdpPoint(mechanism="duchi", user_epsilon=e) for e in (8.0, 512.0)]],
        description="the local DP forms audited")
    low_dim_features: list[str] = Field(default_factory=lambda: list(LOW_DIM_FEATURES),
                                        description="what a low_dim LDP point releases; a task without all of "
                                                    "these features skips those points (the audit says so)")
    ldp_label_share: float = Field(0.2, gt=0, lt=1, description="part of a window's epsilon spent on its label")
    ldp_synthetic_rows: int = Field(6000, ge=100, description="rows the server draws from its debiased model")
    dp_sgd_epsilons: list[float] = Field(default_factory=lambda: [1.0, 8.0], description="user-level epsilons of DP-SGD")
    dp_sgd: DpSgdConfig = Field(default_factory=lambda: DpSgdConfig(enabled=True))
    seed: int = Field(0, ge=0)
    include_plain: bool = Field(True, description="audit the pseudonymized and anonymized forms too")
    name: str = Field("audit", pattern=r"^[a-z0-9_-]{1,40}$", description="report file name under TANDEM_HOME/reports")
    torch_threads: int = Field(1, ge=1, le=64, description="torch intra-op threads: small MLPs gain nothing from "
                                                          "more, and on a shared machine contention costs ~10x")

    @classmethod
    def quick(cls) -> AuditParams:
        return cls(source="synthetic", train=model.TrainConfig(epochs=15, patience=4), shadows=1,
                   ldp=[LdpPoint(user_epsilon=8.0)], ldp_synthetic_rows=1000, dp_sgd_epsilons=[8.0],
                   dp_sgd=DpSgdConfig(enabled=True, steps=40), batch_windows=8)

    @classmethod
    def for_evaluation(cls, params: EvaluationParams) -> AuditParams:
        """The audit step of `tandem evaluate`: the evaluation's fleet and protocol (quick for synthetic runs)."""
        if params.source == "synthetic":
            return cls.quick()
        return cls(holdout_every=params.holdout_every, fraction=params.fraction, train=params.train,
                   per_user_budget=params.per_user_budget, seed=params.seed)


# ---- the fleet ------------------------------------------------------------------------------------

class Part:
    """One user's rows: features, class indices."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y


class Fleet:
    """The task's users as the audit splits them (sharing / never-sharing, pool / test / shared rows)."""

    def __init__(self, task: Task, p: AuditParams):
        self.task, self.kind = task, kind_of(task)
        self.classes, self.n_classes = self.kind.classes, len(self.kind.classes)
        self.feature_names = features.of(task).feature_names
        users = (fleet.synthetic_fleet(task, p.synthetic_users, p.synthetic_windows_per_class, p.seed)
                 if p.source == "synthetic" else fleet.task_fleet(task))
        self.sharers, self.evaluators = fleet.split_users(users, p.holdout_every)
        self.shared, self.unshared, self.pool, self.test, self.labelled = {}, {}, {}, {}, {}
        for u in self.sharers + self.evaluators:
            pool, test = local_split(u)
            self.pool[u.user_id], self.test[u.user_id] = pool, test
        for u in self.sharers:
            pool = self.pool[u.user_id]
            mask = shared_mask(subset(u, pool), p.fraction)
            shared = pool[mask]
            self.shared[u.user_id] = shared[np.argsort(u.captured_at[shared], kind="stable")]
            self.unshared[u.user_id] = pool[~mask]
        for u in self.evaluators:
            self.labelled[u.user_id] = pick_labelled(u.labels, self.pool[u.user_id], per_user=p.per_user_budget)

    def y(self, labels) -> np.ndarray:
        """Class names -> class indices in the task's order."""
        return self.kind.targets(labels)

    def rows(self, u, idx) -> Part:
        return Part(u.features[idx], self.y(u.labels[idx]))


# ---- one form -------------------------------------------------------------------------------------

Trainer = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _proba(net) -> Callable[[np.ndarray], np.ndarray]:
    return lambda X: model.predict_proba(net, X)


def solve_window_epsilon(target: float, windows: int, label_share: float, delta: float, n_classes: int) -> float:
    """The per-window epsilon whose `windows`-fold composition (features pure + label RR over `n_classes`) is `target`."""
    def user_eps(w: float) -> float:
        events = ldp.LdpConfig("piecewise", (1 - label_share) * w, label_share * w).window_events(n_classes)
        return dp_accountant.user_epsilon([events] * windows, delta)

    lo, hi = 1e-4, target
    for _ in range(30):  # epsilon grows with w: bisection, kept on the safe side
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if user_eps(mid) <= target else (lo, mid)
    return lo


class Form:
    """A sharing form: how a user's shared rows look on the server, the model trained on them,
    and its guarantees."""

    def __init__(self, name: str, description: str, view, trainer: Trainer, user_epsilon: Callable[[int], float],
                 model_privacy: dict | None = None, qi_level: int = 0, parameters: dict | None = None,
                 same_model_as: str | None = None):
        self.name, self.description, self.view, self.trainer = name, description, view, trainer
        self.user_epsilon, self.model_privacy, self.qi_level = user_epsilon, model_privacy, qi_level
        self.parameters = parameters or {}
        self.same_model_as = same_model_as  # identical training rows and trainer: reuse that form's model numbers


def _plain_trainer(train: model.TrainConfig, n_classes: int) -> Trainer:
    return lambda X, y, g: _proba(model.train(X, y, train, groups=g, n_classes=n_classes).model)


def forms(p: AuditParams, fl: Fleet, train: model.TrainConfig) -> list[Form]:
    """The audited forms; `train`: the task's pretraining config with the audit's overrides."""
    bounds = np.array(list(clip_bounds(fl.task).values()))
    plain_view = lambda u, idx: (u.features[idx], fl.y(u.labels[idx]))
    inf = lambda n: math.inf
    out = [Form("pseudonymized", "keyed pseudonyms; features and labels as they are", plain_view,
                _plain_trainer(train, fl.n_classes), inf),
           Form("anonymized", "as pseudonymized, quasi-identifiers generalized one level (k enforced on the server)",
                plain_view, _plain_trainer(train, fl.n_classes), inf, qi_level=1, same_model_as="pseudonymized")]
    if not p.include_plain:
        out = []

    for eps in p.laplace_window_epsilons:
        policy = SharingPolicy(forms=["dp"], epsilon_features=0.8 * eps, epsilon_labels=0.2 * eps, user_budget_epsilon=1e12)

        def lap_view(u, idx, policy=policy):
            X, labels = privatize(u.features[idx], u.labels[idx], window_ids(u, idx, AUDIT_KEY), policy, AUDIT_KEY, fl.task)
            return X, fl.y(labels)

        events = policy.window_events(fl.n_classes)
        out.append(Form(f"dp-laplace-v1 w{eps:g}", f"v1 dp form: Laplace on all {len(fl.feature_names)} features + RR, {eps:g} per window",
                        lap_view, _plain_trainer(train, fl.n_classes),
                        lambda n, events=events: dp_accountant.user_epsilon([events] * n, p.delta),
                        parameters={"window_epsilon": eps}))

    for point in p.ldp:
        if point.low_dim and not set(p.low_dim_features) <= set(fl.feature_names):
            continue  # the task has no such release (its features are its own): `run_audit` records the skip
        w = solve_window_epsilon(point.user_epsilon, point.windows_per_user, p.ldp_label_share, p.delta, fl.n_classes)
        low = tuple(fl.feature_names.index(f) for f in p.low_dim_features) if point.low_dim else None
        cfg = ldp.LdpConfig(point.mechanism, (1 - p.ldp_label_share) * w, p.ldp_label_share * w,
                            windows_per_user=point.windows_per_user, features=low)
        out.append(_ldp_form(p, fl, train, cfg, point.user_epsilon, bounds))

    for eps in p.dp_sgd_epsilons:
        cfg = p.dp_sgd.model_copy(update={"target_epsilon": eps, "delta": p.delta, "enabled": True})
        holder: dict = {}

        def sgd_trainer(X, y, g, cfg=cfg, holder=holder):
            result = train_user_level(fl.task, X, y, g, train, cfg)
            holder.setdefault("privacy", result.privacy)
            return _proba(result.model)

        out.append(Form(f"dp-sgd e{eps:g}", f"pseudonymized sharing; the model by user-level DP-SGD at epsilon {eps:g}",
                        plain_view, sgd_trainer, inf, model_privacy=holder, parameters={"model_epsilon": eps}))
    return out


def _ldp_form(p: AuditParams, fl: Fleet, train: model.TrainConfig, cfg: ldp.LdpConfig, target: float,
              bounds: np.ndarray) -> Form:
    m = cfg.windows_per_user

    def view(u, idx):
        keep = idx[pick_labelled(np.asarray(u.labels)[idx], np.arange(len(idx)), per_user=m)] if len(idx) > m else idx
        Z, y = ldp.privatize(u.features[keep], fl.y(u.labels[keep]), window_ids(u, keep, AUDIT_KEY), cfg, bounds,
                             fl.n_classes, AUDIT_KEY)
        return ldp.unstandardize(Z, bounds), y  # the server's unbiased estimates, in feature units

    def trainer(X, y, g):
        Z = ldp.standardize_unclipped(X, bounds)
        cm = ldp.debias(Z, y, cfg, fl.n_classes)
        Zs, ys = ldp.synthetic_training_rows(cm, p.ldp_synthetic_rows, p.seed)
        net = model.train(ldp.unstandardize(Zs, bounds), ys, train, n_classes=fl.n_classes).model
        if cfg.features is not None:  # the model must ignore what the users never released
            hidden = [j for j in range(len(bounds)) if j not in set(cfg.features)]
            with torch.no_grad():
                net.body[0].weight[:, hidden] = 0.0
                net.std[hidden] = 1.0
        return _proba(net)

    events = cfg.window_events(fl.n_classes)
    d = len(cfg.features) if cfg.features is not None else len(bounds)
    return Form(f"ldp-{cfg.mechanism}{'-8f' if cfg.features is not None else ''} u{target:g} m{m}",
                f"local DP: {cfg.mechanism}, k={cfg.coordinates(d)} of {d} coordinates, "
                f"{m} windows per user, per-user epsilon {target:g}",
                view, trainer, lambda n: dp_accountant.user_epsilon([events] * min(n, m), p.delta),
                parameters={"mechanism": cfg.mechanism, "windows_per_user": m, "window_epsilon_features": cfg.epsilon_features,
                            "window_epsilon_label": cfg.epsilon_labels, "k": cfg.coordinates(d), "released_features": d,
                            "user_epsilon_target": target})


# ---- measuring one form ------------------------------------------------------------------------------

def _balanced(a: Part, b: Part, rng) -> tuple[tuple, tuple]:
    n = min(len(a.y), len(b.y))
    ia, ib = rng.choice(len(a.y), n, replace=False), rng.choice(len(b.y), n, replace=False)
    return (a.X[ia], a.y[ia]), (b.X[ib], b.y[ib])


def _cat(parts: list[Part]) -> Part:
    return Part(np.vstack([q.X for q in parts]), np.concatenate([q.y for q in parts]))


def audit_form(p: AuditParams, fl: Fleet, form: Form, run_params: RunParams, log=print,
               reuse: dict | None = None) -> dict:
    t0 = time.perf_counter()
    views = {u.user_id: form.view(u, fl.shared[u.user_id]) for u in fl.sharers}
    link, attribute = _linkage(p, fl, form, views)
    model_part = reuse or _model_part(p, fl, form, views, run_params)
    per_user_eps = [form.user_epsilon(len(fl.shared[u.user_id])) for u in fl.sharers]
    result = {
        "form": form.name, "description": form.description, "parameters": form.parameters,
        "user_epsilon_max": _finite(max(per_user_eps)), "user_epsilon_median": _finite(float(np.median(per_user_eps))),
        "delta": p.delta, "model_privacy": (form.model_privacy or {}).get("privacy"),
        "shared_windows_per_user_median": float(np.median([len(v[1]) for v in views.values()])),
        **model_part, **link, "attribute": attribute, "seconds": round(time.perf_counter() - t0, 1),
    }
    log(f"{form.name}: user eps {result['user_epsilon_max']}, generic {result['generic']:.3f}, personalized "
        f"{result['personalized']:.3f}, re-id {link['reid_top1']:.2f} (chance {link['reid_chance']:.2f}), MIA loss "
        f"{result['mia_window_loss_auc']:.3f} user {result['mia_user_loss_auc']:.3f} shadow "
        f"{result['mia_shadow_auc']:.3f} ({result['seconds']} s)")
    return result


def _linkage(p: AuditParams, fl: Fleet, form: Form, views: dict) -> tuple[dict, dict]:
    """Re-identification of each user's last windows, then the quasi-identifiers through the link."""
    reference, batches = {}, {}
    for uid, (Xv, yv) in views.items():
        cut = max(1, min(p.batch_windows, len(yv) // 2))
        reference[uid], batches[uid] = (Xv[:-cut], yv[:-cut]), (Xv[-cut:], yv[-cut:])
    link = attacks.linkage(reference, batches, fl.n_classes, seed=p.seed)
    truth = {u.user_id: dict(u.device) for u in fl.sharers}
    stored = {uid: {c: generalize(c, v, form.qi_level) for c, v in d.items()} for uid, d in truth.items()}
    attribute = attacks.attribute_inference(link.pop("predicted"), stored, truth)
    return ({"reid_top1": link["top1"], "reid_chance": link["chance"], "reid_mean_rank": link["mean_rank"],
             "reid_batch_windows": int(np.median([len(b[1]) for b in batches.values()]))}, attribute)


def _model_part(p: AuditParams, fl: Fleet, form: Form, views: dict, run_params: RunParams) -> dict:
    """Train on the form's rows; utility on the never-sharing users; membership inference."""
    rng = np.random.default_rng(p.seed)
    X = np.vstack([v[0] for v in views.values()])
    y = np.concatenate([v[1] for v in views.values()])
    g = np.concatenate([[uid] * len(v[1]) for uid, v in views.items()])
    proba = form.trainer(X, y, g)

    # utility on the never-sharing users
    device = DeviceModel.load(convert(fl.task, model.TrainResult(model=_net_of(proba)), run_params, {"audit": form.name}))
    generic, personal = {}, {}
    for u in fl.evaluators:
        test = fl.test[u.user_id]
        r = update_and_score(device, u, fl.labelled[u.user_id], test, epochs=p.update_epochs,
                             learning_rate=p.update_learning_rate)
        generic[u.user_id], personal[u.user_id] = r.accuracy_before, r.accuracy_after

    # membership inference against the released model
    members = _cat([fl.rows(u, fl.shared[u.user_id]) for u in fl.sharers])
    outsiders = _cat([fl.rows(u, fl.unshared[u.user_id]) for u in fl.sharers])
    m_in, m_out = _balanced(members, outsiders, rng)
    mia_window = attacks.membership_loss_auc(proba, m_in, m_out)
    mia_user = attacks.user_membership_loss_auc(
        proba, [(q.X, q.y) for q in (fl.rows(u, fl.shared[u.user_id]) for u in fl.sharers)],
        [(q.X, q.y) for q in (fl.rows(u, fl.pool[u.user_id]) for u in fl.evaluators)])

    def shadow_train(Xa, ya, ga):
        views_a = {}
        for grp in dict.fromkeys(ga.tolist()):
            sel = ga == grp
            views_a[grp] = form.view(_Rows(Xa[sel], ya[sel], str(grp), fl.classes), np.arange(int(sel.sum())))
        Xs = np.vstack([v[0] for v in views_a.values()])
        ys = np.concatenate([v[1] for v in views_a.values()])
        gs = np.concatenate([[k] * len(v[1]) for k, v in views_a.items()])
        return form.trainer(Xs, ys, gs)

    attacker = [(fl.rows(u, fl.pool[u.user_id]).X, fl.rows(u, fl.pool[u.user_id]).y) for u in fl.evaluators]
    mia_shadow = attacks.membership_shadow_auc(shadow_train, proba, attacker, m_in, m_out, shadows=p.shadows, seed=p.seed)

    return {"generic": float(np.mean(list(generic.values()))), "personalized": float(np.mean(list(personal.values()))),
            "mia_window_loss_auc": mia_window, "mia_user_loss_auc": mia_user, "mia_shadow_auc": mia_shadow}


class _Rows:
    """An attacker's user as the views expect one (features, labels, stable window keys)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, user_id: str, classes: tuple[str, ...]):
        self.features, self.labels, self.user_id = X, np.array(classes)[y], f"attacker-{user_id}"
        self.window_keys = [f"0:{i}" for i in range(len(y))]


def _net_of(proba) -> model.Classifier:
    for cell in proba.__closure__ or ():
        if isinstance(cell.cell_contents, model.Classifier):
            return cell.cell_contents
    raise TypeError("the trainer did not return a model's predict_proba")


def _finite(v: float) -> float | None:
    return None if math.isinf(v) else float(v)


def run_audit(task: Task, p: AuditParams | None = None, log=print) -> dict:
    """Audit every form on the task's fleet (a classification task: the attacks and the DP label
    mechanism work on classes). `p.train` gives only what differs from the task's training config."""
    p = p or AuditParams()
    torch.set_num_threads(p.torch_threads)
    t0 = time.perf_counter()
    fl = Fleet(task, p)
    for u in fl.sharers + fl.evaluators:
        u.features  # featurize once  # noqa: B018
    train = p.train.on(task)
    run_params = RunParams.for_task(task, {"train": train.model_dump()})
    log(f"audit: {len(fl.sharers)} sharing users, {len(fl.evaluators)} never-sharing users ({p.source})")
    rows, done = [], {}
    for f in forms(p, fl, train):
        reuse = done.get(f.same_model_as)
        rows.append(audit_form(p, fl, f, run_params, log, reuse=reuse))
        done[f.name] = {k: rows[-1][k] for k in ("generic", "personalized", "mia_window_loss_auc",
                                                 "mia_user_loss_auc", "mia_shadow_auc")}
    skipped = [] if set(p.low_dim_features) <= set(fl.feature_names) else [
        f"ldp {q.mechanism} u{q.user_epsilon:g} low_dim: the task has not every one of {p.low_dim_features}"
        for q in p.ldp if q.low_dim]
    for line in skipped:
        log(f"skipped {line}")
    return {"schema": "tandem/privacy-audit/v1", "params": p.model_dump(mode="json"), "forms": rows, "skipped": skipped,
            "users": {"sharing": len(fl.sharers), "evaluation": len(fl.evaluators)},
            "seconds": round(time.perf_counter() - t0, 1)}
