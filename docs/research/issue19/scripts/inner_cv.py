"""The inner CV every script here uses: an outer fold's sharing users only, in user-disjoint inner folds
whose evaluation users are treated exactly as the protocol's never-sharing ones."""
from tandem.evaluation.protocol_data import fold_split, sides
from tandem.evaluation.tuning import train_for_fold
from tandem.fleet.users import task_fleet
from tandem.task.kinds import kind_of


def inner_folds(task, outer, seeds, n_outer=3, n_inner=4):
    """Per seed and inner fold: (seed, inner fold, the inner-training users' sides (half their pool
    shared), the inner-evaluation users' sides (never sharing), the outer fold's training config, seeded)."""
    kind = kind_of(task)
    sharers, _ = fold_split(task_fleet(task), outer, n_outer)
    train = train_for_fold(task, n_outer)(outer)
    for seed in seeds:
        for inner in range(n_inner):
            tr, ev = fold_split(sharers, inner, n_inner)
            yield seed, inner, sides(tr, 0.5, kind), sides(ev, None, kind), train.model_copy(update={"seed": seed})


def shipped_models(task, outer, seeds, transform=None):
    """Per seed and inner fold: (seed, inner fold, the inner-evaluation users' sides, the generic model as the
    task ships it: trained on the inner-training users' shared rows with the layers the task updates, converted
    with the task's device settings). `transform(S, E)` -> (E, X, y, groups) may change the server's training
    rows (default: `server_data(S)`) and the inner-evaluation users' features."""
    from tandem.evaluation.methods.base import Fold, to_device
    from tandem.evaluation.protocol import layers_for
    from tandem.evaluation.protocol_data import server_data
    from tandem.release.params import DeviceUpdateConfig
    from tandem.training import model
    from tandem.training.device_update import policy_for

    kind, device = kind_of(task), DeviceUpdateConfig.for_task(task)
    for seed, inner, S, E, train in inner_folds(task, outer, seeds):
        E, X, y, groups = transform(S, E) if transform else (E, *server_data(S))
        train = train.model_copy(update={"updatable_layers": layers_for(task, train, None)})
        trained = model.train(X, y, train, groups=groups, **kind.train_options())
        yield seed, inner, E, to_device(trained, Fold(task, kind, S, seed, train, device, policy_for(task)))


def personalized(kind, model, evaluators, budgets, policy):
    """Per inner-evaluation user and labelled budget: (side, budget, the base's held-out accuracy, the
    policy's result, its held-out accuracy)."""
    from tandem.device.update_policy import personalize
    from tandem.evaluation.protocol import BUDGETS
    from tandem.training.personalization import pick_labelled

    for s in evaluators:
        base = kind.score(model.predict(s.X[s.test]), s.user.labels[s.test])["accuracy"]
        for b in budgets:
            lab = pick_labelled(s.user.labels, s.pool, **BUDGETS[b])
            p = personalize(model, s.X[lab], s.user.labels[lab], policy)
            yield s, b, base, p, kind.score(p.model.predict(s.X[s.test]), s.user.labels[s.test])["accuracy"]
