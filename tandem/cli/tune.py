"""`tandem tune`: the server model's hyperparameters for the task, chosen on the sharing users only (an
Optuna study per fold, `tandem.evaluation.tuning`). The choice is kept in the task folder's
`tuned_models.json`, which `tandem evaluate` reads for that fold; an untuned task trains with its
task.yaml `training` section or Tandem's documented generic defaults, never another task's."""

from __future__ import annotations

import typer
from rich.console import Console

from tandem import task as tasks
from tandem.evaluation import tuning
from tandem.settings import Settings

console = Console()


def tune_command(
    fold: int = typer.Option(0, min=0, help="the fold to tune (its never-sharing users are not loaded)"),
    folds: int = typer.Option(3, min=2, help="leave-group-out folds, as `tandem evaluate --folds`"),
    trials: int = typer.Option(40, min=1, help="Optuna trials"),
    seeds: int = typer.Option(2, min=1, help="seeds per trial (the objective: mean - sd/2 over them)"),
    inner_folds: int = typer.Option(4, min=2, help="inner leave-group-out folds over the sharing users"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log the study to MLflow"),
):
    """Choose the server model's hyperparameters on the sharing users of one fold; `tandem evaluate` uses them."""
    if fold >= folds:
        raise typer.BadParameter(f"fold {fold} is not within 0..{folds - 1}", param_hint="--fold")
    settings = Settings()
    task = tasks.resolve(settings.task)  # resolved once, passed down
    result = tuning.study(task, fold, folds, trials, inner_folds=inner_folds, seeds=tuple(range(seeds)),
                          track=not no_mlflow, settings=settings)
    path = tuning.record(task, result)
    best = result["best"]
    console.print(f"fold {fold} of {folds}: best {best['mean']:.4f} ± {best['sd']:.4f} over {trials} trials "
                  f"({len(result['sharing_users'])} sharing users); kept in {path}", soft_wrap=True)
