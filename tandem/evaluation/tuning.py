"""Choosing the server model's hyperparameters: an Optuna study on the sharing users only.

Inner leave-group-out: the fold's sharing users split into `inner_folds` groups; each trial trains
on the other groups' shared windows and scores on the held-out group's test windows, over a few
seeds; the objective is the mean accuracy minus half its sd over seeds (a stable model beats a lucky
one). The fold's never-sharing users are not loaded into the study at all. Each study is one MLflow
run (experiment `tandem/tuning`) with one metric step per trial; the best parameters per fold go to
the task folder's `tuned_models.json`, which `tandem evaluate` reads. A regression task's objective
is its MAE (plus half its sd over seeds), minimized.

    TANDEM_TASK=har python -m tandem.evaluation.tuning --fold 0 --trials 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import optuna

from tandem import task as tasks
from tandem.evaluation.methods.local_only import outputs
from tandem.evaluation.protocol_data import Side, fold_split, server_data, sides
from tandem.fleet.users import task_fleet
from tandem.release.tracker import Tracker
from tandem.settings import Settings
from tandem.task import Task
from tandem.task.kinds import kind_of
from tandem.training import model


def tuned_file(task: Task) -> Path:
    """Where a task's studies are kept: `tuned_models.json` in its folder."""
    return (task.folder or Path(".")) / "tuned_models.json"


def inner_score(sharers: list[Side], config: model.TrainConfig, inner_folds: int, seeds: list[int]) -> tuple[float, float]:
    """(mean, sd over seeds) of inner leave-group-out headline metric (a classifier's accuracy, a regressor's MAE)."""
    per_seed = []
    for seed in seeds:
        accs = []
        for g in range(inner_folds):
            held = [s for i, s in enumerate(sharers) if i % inner_folds == g]
            train = [s for i, s in enumerate(sharers) if i % inner_folds != g]
            X, y, groups = server_data(train)
            kind = held[0].kind
            net = model.train(X, y, config.model_copy(update={"seed": seed}), groups=groups, **kind.train_options()).model
            Xt = np.concatenate([s.X[s.test] for s in held])
            truth = np.concatenate([s.user.labels[s.test] for s in held])
            accs.append(kind.score(kind.decode(outputs(net, Xt)), truth)[kind.headline])
        per_seed.append(float(np.mean(accs)))
    return float(np.mean(per_seed)), float(np.std(per_seed))


def suggest(trial) -> model.TrainConfig:
    width = trial.suggest_categorical("width", [64, 128, 256])
    depth = trial.suggest_int("depth", 1, 3)
    return model.TrainConfig(
        hidden_sizes=[width] * depth,
        learning_rate=trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        label_smoothing=trial.suggest_float("label_smoothing", 0.0, 0.2),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
        patience=trial.suggest_int("patience", 10, 40),
        epochs=150,
    )


def study(task: Task, fold: int, n_folds: int = 3, trials: int = 40, inner_folds: int = 4, seeds=(0, 1),
          fraction: float = 0.5, track: bool = True, settings: Settings | None = None) -> dict:
    kind = kind_of(task)
    sharers, _ = fold_split(task_fleet(task), fold, n_folds)  # never-sharing users are dropped here
    sharer_sides = sides(sharers, fraction, kind)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sign = 1.0 if kind.higher_is_better else -1.0  # the study maximizes sign * mean - 0.5 sd
    s = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=fold))
    s.enqueue_trial({"width": 64, "depth": 2, "learning_rate": 1e-3, "weight_decay": 1e-3, "dropout": 0.0,
                     "label_smoothing": 0.0, "batch_size": 64, "patience": 15})  # the old defaults, for reference
    records = []

    def objective(trial):
        mean, sd = inner_score(sharer_sides, suggest(trial), inner_folds, list(seeds))
        trial.set_user_attr("mean", mean)
        trial.set_user_attr("sd", sd)
        records.append({"trial": trial.number, "mean": mean, "sd": sd, **trial.params})
        print(f"fold {fold} trial {trial.number}: {mean:.4f} ± {sd:.4f} {trial.params}", flush=True)
        return sign * mean - 0.5 * sd

    s.optimize(objective, n_trials=trials)
    best = s.best_trial
    config = suggest(optuna.trial.FixedTrial(best.params))
    result = {"fold": fold, "n_folds": n_folds, "sharing_users": [u.user_id for u in sharers],
              "inner_folds": inner_folds, "seeds": list(seeds), "trials": trials,
              "best": {"objective": best.value, "mean": best.user_attrs["mean"], "sd": best.user_attrs["sd"],
                       "params": best.params},
              "reference": records[0], "train_config": config.model_dump(mode="json")}
    if track:
        _log(settings or Settings(), result, records)
    return result


def _log(settings: Settings, result: dict, records: list[dict]) -> None:
    tracker = Tracker(settings)
    rid = tracker.start_run(run_name=f"optuna-fold-{result['fold']}", params=result["best"]["params"],
                            tags={"tandem.kind": "tuning"}, experiment="tandem/tuning")
    for r in records:
        tracker.log_metrics(rid, {"trial_mean": r["mean"], "trial_sd": r["sd"]}, step=r["trial"])
    tracker.log_metrics(rid, {"best_mean": result["best"]["mean"]})
    tracker.log_dict(rid, {"result": result, "trials": records}, "study.json")
    tracker.end_run(rid)


def tuned_config(task: Task, fold: int, n_folds: int = 3) -> model.TrainConfig | None:
    """The study's choice for a fold of the task, or None when that fold was not tuned."""
    path = tuned_file(task)
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(f"{n_folds}:{fold}")
    if not entry:
        return None
    # The study chose pretraining hyperparameters; which layers the device updates is the task's (and
    # the protocol's) setting, not the study's.
    chosen = {k: v for k, v in entry["train_config"].items() if k != "updatable_layers"}
    return model.TrainConfig.model_validate(chosen)


def train_for_fold(task: Task, n_folds: int):
    """fold -> the server's TrainConfig for that fold: the study's choice, else the task's own."""

    def pick(fold: int) -> model.TrainConfig:
        # Folds without a study of their own take fold 0's choice (see docs/evaluation.md: a leak for them).
        return (tuned_config(task, fold, n_folds) or tuned_config(task, 0, n_folds)
                or model.TrainConfig.for_task(task))
    return pick


def record(task: Task, result: dict) -> Path:
    """Keep a study's result in the task folder's tuned_models.json (one entry per folds:fold)."""
    path = tuned_file(task)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[f"{result['n_folds']}:{result['fold']}"] = result
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tandem.evaluation.tuning")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seeds", type=int, default=2, help="seeds per trial")
    p.add_argument("--no-mlflow", action="store_true")
    a = p.parse_args(argv)
    settings = Settings()
    task = tasks.resolve(settings.task)
    result = study(task, a.fold, a.folds, a.trials, seeds=tuple(range(a.seeds)), track=not a.no_mlflow, settings=settings)
    record(task, result)
    print(json.dumps(result["best"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
