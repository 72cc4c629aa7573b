"""The comparison gate: a candidate must beat what the task can state without a model (the baseline:
always predicting the majority class; for a regressor after each user's update, the user's own mean)
by a margin, and must not be worse than production on the same evaluation users. Each failure names
the run parameter that moves it."""

from __future__ import annotations

import numpy as np

from tandem.data.store import Store
from tandem.device.runtime import DeviceModel
from tandem.release.gates.inputs import GateInputs
from tandem.release.gates.update import personalization_summary
from tandem.release.layout import fetch_release, read_channel
from tandem.release.params import GateThresholds
from tandem.task.kinds import Kind
from tandem.training import metrics as evaluation
from tandem.training.personalization import local_split, pick_labelled

NAME = "comparison"


def production_model(model_name: str, store: Store) -> tuple[str, DeviceModel] | None:
    """The current production release's model, verified like an app build pulls it."""
    if read_channel(store, model_name, "production") is None:
        return None
    manifest, _, files = fetch_release(store, model_name, "production", names=["model.mlmodel"])
    return manifest["version"], DeviceModel.load(files["model.mlmodel"])


def scores(kind: Kind, device: DeviceModel, users) -> dict:
    """The kind's gated metrics (accuracy and macro-F1, or MAE and RMSE) of a Core ML model on the users' rows."""
    X = np.concatenate([u.features for u in users])
    labels = np.concatenate([u.labels for u in users])
    measured = kind.measure(labels, device.predict(X), evaluation)
    return {k: measured[k] for k in kind.metrics}


def moved_by(setting: str) -> str:
    """Where the threshold lives, so a blocked team knows what to change (and that it is a choice)."""
    return f" (the run parameter gates.{setting}: set it in --params-file, e.g. {{\"gates\": {{\"{setting}\": ...}}}})"


def baseline_failure(kind: Kind, value: float, baseline: tuple[float, str], t: GateThresholds,
                     subject: str = "") -> tuple[float, str | None]:
    """The floor (or a regressor's ceiling) the baseline and the margin set, and why `value` misses it."""
    base, what = baseline
    margin = getattr(t, kind.margin_setting)
    bar = kind.bar(base, margin)
    if (value >= bar) if kind.higher_is_better else (value <= bar):
        return bar, None
    label = kind.headline_label
    side, by = ("below the floor", f"plus the margin {margin:g}") if kind.higher_is_better else \
        ("above the ceiling", f"less the margin's share {margin:g}")
    return bar, (f"{label}{subject} {value:.3f} is {side} {bar:.3f}: the baseline's {label} {base:.3f} ({what}) {by}"
                 + moved_by(kind.margin_setting))


def generic_floor(g: GateInputs, candidate: dict, so_far: dict) -> tuple[float, tuple[float, str], str]:
    """The generic model on the evaluation users against the best constant answer on their rows."""
    labels = np.concatenate([u.labels for u in g.users])
    base, what = g.kind.baseline(labels, g.trained_targets())
    return candidate[g.kind.headline], (base, f"{what} on the evaluation users' rows"), ""


def personalized_floor(g: GateInputs, candidate: dict, so_far: dict) -> tuple[float, tuple[float, str], str]:
    """The model after each user's on-device update (the update gate's users and labelled examples)
    against each user predicting the mean of the same labelled examples, on the same later rows."""
    per_user = []
    for u in g.gated_users:
        pool, test = local_split(u)
        labelled = pick_labelled(u.labels, pool, per_user=g.thresholds.personalization_labels)
        per_user.append(g.kind.baseline(np.asarray(u.labels)[test], np.asarray(u.labels)[labelled])[0])
    what = (f"each user's own mean of its {g.thresholds.personalization_labels} labelled examples, on its later "
            f"rows ({len(per_user)} users)")
    return so_far["update"][f"{g.kind.headline}_after"], (float(np.mean(per_user)), what), " after the on-device update"


FLOORS = {"generic": generic_floor, "personalized": personalized_floor}  # by the kind's `floor_on`


def comparison_gate(kind: Kind, candidate: dict, production: dict | None, version: str | None, t: GateThresholds,
                    baseline: tuple[float, str] | None = None, judged: float | None = None, subject: str = "") -> dict:
    """Candidate against the baseline's floor, the absolute limits a team may set (`min_accuracy`,
    `max_mae`) and production on the same users (a metric where higher is better may drop by its
    `max_<metric>_drop`; a regressor's MAE and RMSE may rise by `max_error_increase`, in target units).
    `judged`: the number the floor judges (default: the candidate's headline metric), `subject` what it is."""
    failures, floor = [], None
    judged = candidate[kind.headline] if judged is None else judged
    if baseline is not None:
        floor, failure = baseline_failure(kind, judged, baseline, t, subject)
        failures += [failure] if failure else []
    if t.min_accuracy is not None and "accuracy" in candidate and candidate["accuracy"] < t.min_accuracy:
        failures.append(f"accuracy {candidate['accuracy']:.3f} is below the floor {t.min_accuracy:.3f}"
                        + moved_by("min_accuracy"))
    if t.max_mae is not None and "mae" in candidate and candidate["mae"] > t.max_mae:
        failures.append(f"MAE {candidate['mae']:.3f} is above the ceiling {t.max_mae:.3f}" + moved_by("max_mae"))
    if production is not None:
        compared = [(key, f"max_{key}_drop") for key in kind.metrics] if kind.higher_is_better else []
        for key, setting in (*compared, ("gain", "max_personalization_gain_drop")):
            allowed = getattr(t, setting)
            if candidate[key] < production[key] - allowed:
                failures.append(f"{key} {candidate[key]:.3f} is more than {allowed:.3f} below production "
                                f"v{version}'s {production[key]:.3f}" + moved_by(setting))
        for key in () if kind.higher_is_better else kind.metrics:
            if candidate[key] > production[key] + t.max_error_increase:
                failures.append(f"{key} {candidate[key]:.3f} is more than {t.max_error_increase:.3f} above production "
                                f"v{version}'s {production[key]:.3f}" + moved_by("max_error_increase"))
    return {"passed": not failures, "failures": failures, "production_version": version,
            "thresholds": t.model_dump(),
            **({"baseline": baseline[0], "baseline_is": baseline[1], "floor": floor, "floor_judges": judged,
                "floor_on": kind.floor_on, "floor_set_by": f"gates.{kind.margin_setting}"} if baseline is not None else {}),
            **{f"candidate_{k}": v for k, v in candidate.items()},
            **{f"production_{k}": v for k, v in (production or {}).items()}}


def judge(g: GateInputs, so_far: dict) -> dict:
    candidate = {**scores(g.kind, g.device, g.users), "gain": so_far["update"]["gain"]}
    judged, baseline, subject = FLOORS[g.kind.floor_on](g, candidate, so_far)
    prod_scores = None
    if g.production is not None:
        t = g.thresholds
        prod_scores = {**scores(g.kind, g.production[1], g.users),
                       "gain": personalization_summary(g.kind, g.production[1], g.gated_users, t.personalization_labels,
                                                       g.policy)["gain"]}
    return comparison_gate(g.kind, candidate, prod_scores, g.production[0] if g.production else None, g.thresholds,
                           baseline=baseline, judged=judged, subject=subject)


def reason(summary: dict, g: GateInputs) -> str:
    return "; ".join(f"comparison: {f}" for f in summary["failures"])
