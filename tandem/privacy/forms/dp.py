"""dp: local differential privacy on every shared window: features clipped to `clip_bounds` and
noised (Laplace or Gaussian, calibrated to the policy's epsilon), labels by k-ary randomized
response; every window is charged to the user's privacy ledger on the device
(`tandem.privacy.ledger`), and a user past the budget shares nothing more. Noise is seeded per window
by a keyed digest: re-sharing the same window gives the same values and costs nothing more.

The clip is the task's `sharing.dp_clip` (feature-name patterns -> [lo, hi], tighter than the
validation ranges, which admit any device at its widest setting)."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math

import numpy as np
import pandas as pd
import pyarrow as pa

from tandem.contract import features
from tandem.contract.schema import LABEL_COLUMN, POLICY_COLUMN
from tandem.privacy.forms.base import Form
from tandem.task import Task
from tandem.task.kinds import kind_of


def clip_bounds(task: Task) -> dict[str, tuple[float, float]]:
    """[lo, hi] of every feature under the DP form, in feature_names order: the first of the task's
    `sharing.dp_clip` patterns a feature's name matches, else the feature's plausible range (from
    tandem.contract.feature_ops)."""
    featurization = features.of(task)
    plausible = featurization.feature_bounds()
    patterns = list(task.sharing.dp_clip.items())
    bounds: dict[str, tuple[float, float]] = {}
    for name in featurization.feature_names:
        match = next((tuple(b) for pattern, b in patterns if fnmatch.fnmatchcase(name, pattern)), None)
        bounds[name] = match or plausible[name]
    return bounds


def _zcdp_rho(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP implies (epsilon, delta)-DP (Bun & Steinke 2016, Prop. 1.3)."""
    log = math.log(1 / delta)
    return (math.sqrt(epsilon + log) - math.sqrt(log)) ** 2


def noise_scales(policy, task: Task) -> np.ndarray:
    """Per-feature noise scale (Laplace b or Gaussian sigma), in feature_names order.

    Each feature clipped to [lo, hi] is a coordinate of width w = hi - lo. Laplace: scale
    d*w/eps gives the whole vector eps-DP (L1, each coordinate spending eps/d). Gaussian: in
    units of w the L2 sensitivity is sqrt(d); sigma = sqrt(d)/sqrt(2 rho) w is rho-zCDP, with rho
    the largest that implies (eps, delta)-DP."""
    widths = np.array([hi - lo for lo, hi in clip_bounds(task).values()])
    d, eps = len(widths), policy.epsilon_features
    if policy.noise == "laplace":
        return widths * d / eps
    return widths * math.sqrt(d) / math.sqrt(2 * _zcdp_rho(eps, policy.delta))


def rr_keep_probability(epsilon: float, classes: int) -> float:
    return math.exp(epsilon) / (math.exp(epsilon) + classes - 1)


def window_rng(key: bytes, policy, window_id: str) -> np.random.Generator:
    """Deterministic per window and policy, unpredictable without the device's key."""
    digest = hmac.new(key, f"tandem-dp|{policy.fingerprint()}|{window_id}".encode(), hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint64))


def clip_features(values: np.ndarray, task: Task) -> np.ndarray:
    bounds = np.array(list(clip_bounds(task).values()))
    return np.clip(values, bounds[:, 0], bounds[:, 1])


def privatize(x: np.ndarray, labels: np.ndarray, window_ids: list[str], policy, key: bytes,
              task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(noised features, randomized labels) of the given windows. Post-processing (clip again into
    the bounds, min <= max per series) costs no privacy."""
    featurization = features.of(task)
    classes = featurization.classes
    scales = noise_scales(policy, task)
    keep = rr_keep_probability(policy.epsilon_labels, len(classes))
    x = clip_features(np.asarray(x, dtype=np.float64), task)
    out_x, out_y = np.empty_like(x), np.asarray(labels, dtype=object).copy()
    for i, wid in enumerate(window_ids):
        rng = window_rng(key, policy, wid)
        noise = rng.laplace(0.0, scales) if policy.noise == "laplace" else rng.normal(0.0, scales)
        out_x[i] = x[i] + noise
        if rng.random() >= keep:
            others = [a for a in classes if a != out_y[i]]
            out_y[i] = others[int(rng.integers(len(others)))]
    out_x = clip_features(out_x, task)
    index = {name: j for j, name in enumerate(featurization.feature_names)}
    for s in featurization.series:
        lo, hi = out_x[:, index[f"{s}_min"]].copy(), out_x[:, index[f"{s}_max"]].copy()
        out_x[:, index[f"{s}_min"]], out_x[:, index[f"{s}_max"]] = np.minimum(lo, hi), np.maximum(lo, hi)
    return out_x, out_y.astype(str)


def window_epsilon(policy, classes: int) -> list[dict]:
    """What one shared window releases, as `tandem.privacy.dp_accountant` events: the feature vector
    (Laplace: a pure epsilon-DP release; Gaussian: sigma in units of its L2 sensitivity) and the
    label (`classes`-ary randomized response)."""
    if policy.noise == "laplace":
        vector = {"mechanism": "pure", "epsilon": policy.epsilon_features}
    else:
        vector = {"mechanism": "gaussian", "sigma": 1 / math.sqrt(2 * _zcdp_rho(policy.epsilon_features, policy.delta))}
    labels = {"mechanism": "randomized_response", "epsilon": policy.epsilon_labels, "classes": classes}
    return [vector, labels]


class Dp(Form):
    name = "dp"
    suite = True
    charged = True
    summary = "local DP per window: features clipped and noised, labels by randomized response, a per-user budget"

    def check(self, policy, task: Task) -> None:
        if not kind_of(task).randomizable_labels:
            raise ValueError(f"the dp form randomizes class labels; task {task.name} has a numeric target "
                             "(share it pseudonymized, anonymized or encrypted)")

    def device(self, columns: dict, policy, key: bytes, task: Task) -> None:
        if not len(columns[POLICY_COLUMN]):
            return
        names = features.of(task).feature_names
        x = np.column_stack([np.asarray(columns[n].to_numpy(zero_copy_only=False), dtype=np.float64) for n in names])
        y = np.asarray(columns[LABEL_COLUMN].to_pylist(), dtype=object)
        x, y = privatize(x, y, columns["window_id"].to_pylist(), policy, key, task)
        for j, n in enumerate(names):
            columns[n] = pa.array(x[:, j], pa.float64())
        columns[LABEL_COLUMN] = pa.array(y.tolist(), pa.string())

    def local_view(self, frame: pd.DataFrame, policy, task: Task) -> pd.DataFrame:
        names = list(features.of(task).feature_names)
        frame[names] = clip_features(frame[names].to_numpy(np.float64), task)
        return frame

    def public(self, policy, task: Task) -> dict:
        classes = len(features.of(task).classes)
        return {"clip_bounds": {k: list(v) for k, v in clip_bounds(task).items()},
                "mechanism": {"features": policy.noise, "labels": f"{classes}-ary randomized response",
                              "unit": "one shared window; every user's windows composed (dp-accounting PLD) in the device's privacy ledger",
                              "window_events": window_epsilon(policy, classes)}}

    def window_events(self, policy, classes: int) -> list[dict]:
        return window_epsilon(policy, classes)

    def expectations(self, task: Task) -> list[tuple[str, dict]]:
        ex = [("ExpectColumnValuesToBeBetween", {"column": name, "min_value": lo, "max_value": hi})
              for name, (lo, hi) in clip_bounds(task).items()]
        return ex + [("ExpectColumnValuesToMatchRegex", {"column": POLICY_COLUMN, "regex": r"^[a-z+_-]*\bdp\b[a-z+_-]*/v[0-9]+$"})]

    def suite_meta(self) -> dict:
        return {"checks": "features within the DP clipping bounds of policy v1"}


FORM = Dp()
