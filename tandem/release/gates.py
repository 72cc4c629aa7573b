"""Release gates: no release reaches a channel unless the published .mlmodel passes Core ML's rules
for updatable models, computes what torch computed (parity), improves users when updated on the
device, and is not worse than production on the same evaluation users.

Everything here runs the candidate the way a phone would: through `tandem.device`, from its bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from tandem.contract import features
from tandem.data.reference import ReferenceUser as EvalUser
from tandem.data.store import Store
from tandem.device import golden, rules
from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy
from tandem.release.layout import fetch_release, read_channel
from tandem.release.params import GateThresholds, RunParams
from tandem.training import metrics as evaluation
from tandem.training import model
from tandem.training.membership import auc as membership_auc
from tandem.training.membership import membership_loss_auc
from tandem.training.personalization import local_split, personalize, pick_labelled


@dataclass
class GateReport:
    summary: dict = field(default_factory=dict)  # per gate: passed + numbers; goes into the manifest
    reasons: list[str] = field(default_factory=list)  # why a gate failed, one line each
    files: dict[str, bytes] = field(default_factory=dict)  # extra release files (golden vectors, Swift test)

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def metrics(self) -> dict:
        out = {}
        for gate, values in self.summary.items():
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    out[f"{gate}_{key}"] = float(value)
        return out


def rules_gate(device: DeviceModel) -> dict:
    violations = rules.check(device)
    return {"passed": not violations, "violations": [str(v) for v in violations]}


def parity_gate(device: DeviceModel, torch_model, X: np.ndarray, tolerance: float) -> dict:
    """The runtime's probabilities (a regressor's outputs, relative to the target's scale) against
    torch's on the evaluation rows."""
    if features.CLASSIFICATION:
        ours, theirs = device.predict_proba(X), model.predict_proba(torch_model, X)
        diff = float(np.abs(ours - theirs).max())
        same_labels = bool((ours.argmax(1) == theirs.argmax(1)).all())
    else:
        ours, theirs = device.predict(X), model.predict_values(torch_model, X)
        diff = float(np.abs(ours - theirs).max() / max(1.0, float(np.abs(theirs).max())))
        same_labels = True
    return {"passed": diff <= tolerance and same_labels, "max_abs_diff": diff, "tolerance": tolerance,
            "labels_identical": same_labels, "rows": len(X)}


def personalization_summary(device: DeviceModel, users: list[EvalUser], labelled_per_user: int) -> dict:
    """Personalize a copy per user on a few labelled earlier windows with the app's update policy,
    score on their later windows."""
    # keyed by position: raw user ids never go into a manifest or MLflow
    results = {f"eval-{i:02d}": personalize(device, u, labelled_per_user, policy=UpdatePolicy()) for i, u in enumerate(users)}
    before = float(np.mean([r.accuracy_before for r in results.values()]))
    after = float(np.mean([r.accuracy_after for r in results.values()]))
    # the score is accuracy, or minus the MAE for a regressor: reported as MAE there
    scored = ({"accuracy_before": before, "accuracy_after": after} if features.CLASSIFICATION
              else {"mae_before": -before, "mae_after": -after})
    return {
        "users": len(results),
        **scored,
        "gain": after - before,
        "loss_fell_for": int(sum(r.loss_after < r.loss_before for r in results.values())),
        "updated": int(sum(not np.isnan(r.loss_before) for r in results.values())),
        "helped": int(sum(r.gain > 0 for r in results.values())),
        "harmed": int(sum(r.gain < 0 for r in results.values())),
        "per_user": {uid: {"before": abs(r.accuracy_before), "after": abs(r.accuracy_after), "loss_before": r.loss_before,
                           "loss_after": r.loss_after} for uid, r in results.items()},
    }


def update_gate(device: DeviceModel, users: list[EvalUser], labelled_per_user: int, max_drop: float = 0.0) -> dict:
    summary = personalization_summary(device, users, labelled_per_user)
    # The policy keeps the base for a user whose held-out labels no epoch improved (loss NaN: no task
    # B ran); every user it did update must see the training loss fall. The mean accuracy may not
    # drop by more than `max_drop` (at the ceiling, one window of a few hundred is noise, not harm).
    summary["max_drop"] = max_drop
    summary["passed"] = summary["loss_fell_for"] == summary["updated"] and summary["gain"] >= -max_drop
    return summary


def production_model(model_name: str, store: Store) -> tuple[str, DeviceModel] | None:
    """The current production release's model, verified like an app build pulls it."""
    if read_channel(store, model_name, "production") is None:
        return None
    manifest, _, files = fetch_release(store, model_name, "production", names=["model.mlmodel"])
    return manifest["version"], DeviceModel.load(files["model.mlmodel"])


def scores(device: DeviceModel, users: list[EvalUser]) -> dict:
    X = np.concatenate([u.features for u in users])
    labels = np.concatenate([u.labels for u in users])
    if not features.CLASSIFICATION:
        m = evaluation.regression_metrics(labels, device.predict(X))
        return {"mae": m["mae"], "rmse": m["rmse"]}
    m = evaluation.metrics(labels, device.predict(X), list(features.CLASSES))
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def _moved_by(setting: str) -> str:
    """Where the threshold lives, so a blocked team knows what to change (and that it is a choice)."""
    return f" (the run parameter gates.{setting}: set it in --params-file, e.g. {{\"gates\": {{\"{setting}\": ...}}}})"


def comparison_gate(candidate: dict, production: dict | None, version: str | None, t: GateThresholds) -> dict:
    """Candidate against the absolute floor and against production on the same users (a regressor:
    its MAE and RMSE may exceed production's by at most `max_error_increase`, in target units). Each
    failure names the run parameter that moves its threshold."""
    failures = []
    if features.CLASSIFICATION and candidate["accuracy"] < t.min_accuracy:
        failures.append(f"accuracy {candidate['accuracy']:.3f} is below the floor {t.min_accuracy:.3f}"
                        + _moved_by("min_accuracy"))
    if not features.CLASSIFICATION and t.max_mae is not None and candidate["mae"] > t.max_mae:
        failures.append(f"MAE {candidate['mae']:.3f} is above the ceiling {t.max_mae:.3f}" + _moved_by("max_mae"))
    if production is not None:
        higher_better = ((("accuracy", t.max_accuracy_drop, "max_accuracy_drop"),
                          ("macro_f1", t.max_macro_f1_drop, "max_macro_f1_drop")) if features.CLASSIFICATION else ())
        for key, allowed, setting in (*higher_better, ("gain", t.max_personalization_gain_drop,
                                                       "max_personalization_gain_drop")):
            if candidate[key] < production[key] - allowed:
                failures.append(f"{key} {candidate[key]:.3f} is more than {allowed:.3f} below production "
                                f"v{version}'s {production[key]:.3f}" + _moved_by(setting))
        lower_better = () if features.CLASSIFICATION else ("mae", "rmse")
        for key in lower_better:
            if candidate[key] > production[key] + t.max_error_increase:
                failures.append(f"{key} {candidate[key]:.3f} is more than {t.max_error_increase:.3f} above production "
                                f"v{version}'s {production[key]:.3f}" + _moved_by("max_error_increase"))
    return {"passed": not failures, "failures": failures, "production_version": version,
            "thresholds": t.model_dump(),
            **{f"candidate_{k}": v for k, v in candidate.items()},
            **{f"production_{k}": v for k, v in (production or {}).items()}}


MEMBERSHIP_ROWS = 2000  # members sampled from the training rows (and as many non-member windows)


def membership_gate(torch_model, train_frame, users: list[EvalUser], threshold: float | None, seed: int = 0) -> dict:
    """Loss-threshold membership inference: training rows against the never-sharing users' windows.
    AUC 0.5 is a coin; a release is blocked above `threshold` (None: measured only)."""
    if train_frame is None or not len(train_frame):
        return {"passed": True, "measured": False, "threshold": threshold}
    rng = np.random.default_rng(seed)
    Xm = train_frame[list(features.FEATURE_NAMES)].to_numpy(np.float64)
    ym = (features.label_indices(train_frame["label"]) if features.CLASSIFICATION
          else train_frame["label"].to_numpy(np.float64))
    Xn = np.concatenate([u.features for u in users])
    yn = np.concatenate([u.y for u in users])
    n = min(MEMBERSHIP_ROWS, len(ym), len(yn))
    im, inn = rng.choice(len(ym), n, replace=False), rng.choice(len(yn), n, replace=False)
    if features.CLASSIFICATION:
        auc = membership_loss_auc(lambda X: model.predict_proba(torch_model, X), (Xm[im], ym[im]), (Xn[inn], yn[inn]))
    else:  # the loss is the squared error: a lower one says "member"
        sq = lambda X, y: (model.predict_values(torch_model, X) - y) ** 2  # noqa: E731
        auc = membership_auc(-sq(Xm[im], ym[im]), -sq(Xn[inn], yn[inn]))
    return {"passed": threshold is None or auc <= threshold, "measured": True, "loss_auc": auc, "rows": int(n),
            "threshold": threshold, "attack": "loss threshold; members: training rows, non-members: evaluation users"}


GOLDEN_WINDOWS = 36
GOLDEN_TOLERANCE = 1e-4
GOLDEN_POLICY_LABELS = 20  # the update gate's budget  # float32 Core ML on a phone against Tandem's float64 runtime


def golden_files(device: DeviceModel, user: EvalUser) -> dict[str, bytes]:
    """Golden vectors (raw windows through featurization, model outputs, one update step) and the
    Swift XCTest that checks the app against them."""
    rows = np.linspace(0, len(user.labels) - 1, min(GOLDEN_WINDOWS, len(user.labels))).astype(int)
    vectors = golden.golden_vectors(device, user.windows[rows], features.featurize_window, user.labels[rows],
                                    feature_names=list(features.FEATURE_NAMES))
    vectors["tolerance"] = GOLDEN_TOLERANCE
    pool, _ = local_split(user)
    labelled = pick_labelled(user.labels, pool, per_user=GOLDEN_POLICY_LABELS)
    vectors["update_policy"] = golden.policy_trace(device, user.features[labelled], user.labels[labelled])
    swift = golden.swift_xctest("golden_vectors", GOLDEN_TOLERANCE, model_resource="TandemModel",
                                kind=vectors["model"]["kind"])
    return {"golden_vectors.json": json.dumps(vectors, indent=1).encode(), "TandemGoldenTests.swift": swift.encode()}


def run_gates(model_name: str, store: Store, mlmodel: bytes, result: model.TrainResult, users: list[EvalUser],
              test_devices: list[EvalUser], params: RunParams, train_frame=None) -> GateReport:
    """`users`: whom the candidate is scored and compared with production on (held-out pseudonyms);
    `test_devices`: the reference set, on which the update gate personalizes (a device updates on its
    own clean data, and held-out rows are in the form users shared them, noised under local DP) and
    whose raw recordings make the golden vectors."""
    t = params.gates
    device = DeviceModel.load(mlmodel)
    gated_users = test_devices[: t.personalization_users]
    report = GateReport()
    report.summary["rules"] = rules_gate(device)
    X = np.concatenate([u.features for u in users + test_devices])
    report.summary["parity"] = parity_gate(device, result.model, X, t.parity_tolerance)
    report.summary["update"] = update_gate(device, gated_users, t.personalization_labels, t.max_update_accuracy_drop)

    candidate = {**scores(device, users), "gain": report.summary["update"]["gain"]}
    production = production_model(model_name, store)
    prod_scores = None
    if production is not None:
        prod_scores = {**scores(production[1], users),
                       "gain": personalization_summary(production[1], gated_users, t.personalization_labels)["gain"]}
    report.summary["comparison"] = comparison_gate(candidate, prod_scores, production[0] if production else None, t)
    report.summary["membership"] = membership_gate(result.model, train_frame, users, t.max_membership_auc)

    if not report.summary["rules"]["passed"]:
        report.reasons.append("rules: " + "; ".join(report.summary["rules"]["violations"]))
    p = report.summary["parity"]
    if not p["passed"]:
        report.reasons.append(f"parity: max |runtime - torch| = {p['max_abs_diff']:.2e} (tolerance {p['tolerance']:.0e}), "
                              f"labels identical: {p['labels_identical']}")
    u = report.summary["update"]
    if not u["passed"]:
        what = (f"mean accuracy {u['accuracy_before']:.3f} -> {u['accuracy_after']:.3f}" if features.CLASSIFICATION
                else f"mean MAE {u['mae_before']:.3f} -> {u['mae_after']:.3f}")
        report.reasons.append(f"update: loss fell for {u['loss_fell_for']} of {u['updated']} updated users, {what}")
    report.reasons += [f"comparison: {f}" for f in report.summary["comparison"]["failures"]]
    mg = report.summary["membership"]
    if not mg["passed"]:
        report.reasons.append(f"membership: loss-threshold AUC {mg['loss_auc']:.3f} is above the limit {mg['threshold']:.3f}")

    if report.passed:
        report.files = golden_files(device, test_devices[0])
    return report
