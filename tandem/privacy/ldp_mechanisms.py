"""Local DP that keeps some utility: standardize on the device, k-of-d coordinate sampling with the
Piecewise or Duchi mechanism (Wang et al., "Collecting and Analyzing Multidimensional Data with Local
Differential Privacy", ICDE 2019), k-ary randomized response on labels; and the server's debiasing.

Device side (`privatize_window`): clip each feature into the policy's public bounds and map it to
[-1, 1]; sample k of the d coordinates; report each sampled one through the 1-D mechanism at
epsilon/k, scaled by d/k (unsampled coordinates report 0). The vector is an unbiased estimate of the
standardized window and the whole release is epsilon-DP (pure); the label is k-ary randomized
response at its own epsilon.

Sampling is floating-point safe by construction: every output is drawn from a *fixed, input-
independent discrete set* (Duchi: two values; Piecewise: the centres of a fixed grid over [-C, C];
labels: the six classes), with integer weights and exact integer sampling from a keyed SHAKE-256
stream. So no low-order bits of a float carry the input (Mironov 2012), and re-sharing a window
gives the same bits (no new release). Rounding the cell masses to 2^-52 moves the likelihood ratio
by a factor below 1 + 1e-9: the stated epsilon covers it with `EPSILON_SLACK`.

Server side (`debias`): the class-conditional means (and, for Piecewise, second moments) of the
standardized features, de-noised through the randomized-response matrix; a Gaussian per class, from
which `synthetic_training_rows` draws rows for the ordinary trainer (post-processing: free).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

GRID = 2048  # Piecewise output cells over [-C, C]
_WEIGHT_BITS = 52
EPSILON_SLACK = 1e-9  # integer rounding of the output weights (see module docstring)


# ---- exact randomness from a keyed stream ---------------------------------------------------------

class KeyedStream:
    """Uniform integers from SHAKE-256(HMAC(key, label)): deterministic per (key, label), unpredictable
    without the key."""

    def __init__(self, key: bytes, label: str):
        seed = hmac.new(key, f"tandem-ldp|{label}".encode(), hashlib.sha256).digest()
        self._xof, self._pos, self._buf = hashlib.shake_256(seed), 0, b""

    def _bytes(self, n: int) -> bytes:
        while self._pos + n > len(self._buf):
            self._buf = self._xof.digest(max(2 * len(self._buf), 4096))
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def randbelow(self, n: int) -> int:
        """Uniform in [0, n) by rejection (no modulo bias)."""
        if n <= 0:
            raise ValueError("n must be positive")
        bits = n.bit_length()
        while True:
            v = int.from_bytes(self._bytes((bits + 7) // 8), "big") >> (8 * ((bits + 7) // 8) - bits)
            if v < n:
                return v

    def choice(self, weights: list[int]) -> int:
        """Index i with probability weights[i] / sum(weights) (integer weights, exact)."""
        cumulative = np.cumsum(np.asarray(weights, dtype=np.int64))  # < 2^63: weights are <= 2^52 + 1 each
        return int(np.searchsorted(cumulative, self.randbelow(int(cumulative[-1])), side="right"))

    def sample(self, n: int, k: int) -> list[int]:
        """k distinct indices of range(n), uniformly (partial Fisher-Yates)."""
        idx = list(range(n))
        for i in range(k):
            j = i + self.randbelow(n - i)
            idx[i], idx[j] = idx[j], idx[i]
        return sorted(idx[:k])


def _int_weights(p: np.ndarray) -> list[int]:
    return [int(v) + 1 for v in np.floor(np.asarray(p, dtype=np.float64) / np.sum(p) * 2**_WEIGHT_BITS)]


# ---- 1-D mechanisms on [-1, 1] -------------------------------------------------------------------

def duchi_bound(eps: float) -> float:
    return (math.exp(eps) + 1) / (math.exp(eps) - 1)


def duchi(z: float, eps: float, rng: KeyedStream) -> float:
    """+-B with P(+B) = 1/2 + z (e^eps - 1) / (2 (e^eps + 1)): unbiased, eps-DP."""
    b = duchi_bound(eps)
    p_plus = 0.5 + z * (math.exp(eps) - 1) / (2 * (math.exp(eps) + 1))
    return b if rng.choice(_int_weights([p_plus, 1 - p_plus])) == 0 else -b


def piecewise_c(eps: float) -> float:
    t = math.exp(eps / 2)
    return (t + 1) / (t - 1)


def piecewise_cells(z: float, eps: float, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """(cell centres, cell masses) of the Piecewise mechanism's output density on a fixed grid."""
    t, c = math.exp(eps / 2), piecewise_c(eps)
    high = (math.exp(eps) - t) / (2 * t + 2)
    low = high / math.exp(eps)
    left = (c + 1) / 2 * z - (c - 1) / 2
    right = left + c - 1
    edges = np.linspace(-c, c, grid + 1)
    overlap = np.clip(np.minimum(edges[1:], right) - np.maximum(edges[:-1], left), 0, None)
    mass = low * np.diff(edges) + (high - low) * overlap
    return (edges[:-1] + edges[1:]) / 2, mass


def piecewise(z: float, eps: float, rng: KeyedStream) -> float:
    centres, mass = piecewise_cells(z, eps)
    return float(centres[rng.choice(_int_weights(mass))])


MECHANISMS = {"piecewise": piecewise, "duchi": duchi}


# ---- the device's release -----------------------------------------------------------------------

@dataclass(frozen=True)
class LdpConfig:
    """One local-DP form. Each shared window is (epsilon_features + epsilon_labels)-DP, pure."""

    mechanism: Literal["piecewise", "duchi"] = "piecewise"
    epsilon_features: float = 1.0
    epsilon_labels: float = 0.5
    k: int = 0  # coordinates reported per window; 0: Wang et al.'s max(1, min(d, floor(eps / 2.5)))
    windows_per_user: int | None = None  # at most this many windows per user (None: as shared)
    features: tuple[int, ...] | None = None  # the feature columns released (None: all); the rest stay on the device

    def coordinates(self, d: int) -> int:
        d = len(self.features) if self.features is not None else d
        return self.k or max(1, min(d, int(self.epsilon_features // 2.5)))

    def window_events(self, classes: int) -> list[dict]:
        """`tandem.privacy.dp_accountant` events of one window."""
        return [{"mechanism": "pure", "epsilon": self.epsilon_features + EPSILON_SLACK},
                {"mechanism": "randomized_response", "epsilon": self.epsilon_labels + EPSILON_SLACK, "classes": classes}]


def standardize(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Features clipped into the public bounds (d, 2) and mapped to [-1, 1]."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    return 2 * (np.clip(x, lo, hi) - lo) / (hi - lo) - 1


def standardize_unclipped(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The server's inverse of `unstandardize` for reported estimates (which leave [-1, 1])."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    return 2 * (np.asarray(x, dtype=np.float64) - lo) / (hi - lo) - 1


def unstandardize(z: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    lo, hi = bounds[:, 0], bounds[:, 1]
    return lo + (np.asarray(z) + 1) * (hi - lo) / 2


def rr_keep(eps: float, classes: int) -> float:
    return math.exp(eps) / (math.exp(eps) + classes - 1)


def privatize_window(z: np.ndarray, label: int, cfg: LdpConfig, classes: int, rng: KeyedStream) -> tuple[np.ndarray, int]:
    """One window's release; unreleased and unsampled coordinates are 0 (the public midpoint)."""
    columns = list(cfg.features) if cfg.features is not None else list(range(len(z)))
    d = len(columns)
    k = cfg.coordinates(d)
    out = np.zeros(len(z))
    mech = MECHANISMS[cfg.mechanism]
    for i in rng.sample(d, k):
        j = columns[i]
        out[j] = d / k * mech(float(z[j]), cfg.epsilon_features / k, rng)
    keep = rr_keep(cfg.epsilon_labels, classes)
    weights = [(keep if c == label else (1 - keep) / (classes - 1)) for c in range(classes)]
    return out, rng.choice(_int_weights(weights))


def privatize(X: np.ndarray, y: np.ndarray, window_ids: list[str], cfg: LdpConfig, bounds: np.ndarray,
              classes: int, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(noisy standardized features, randomized labels) of the windows, one keyed stream per window."""
    Z = standardize(np.asarray(X, dtype=np.float64), bounds)
    out_z, out_y = np.empty_like(Z), np.empty(len(Z), dtype=np.int64)
    for i, wid in enumerate(window_ids):
        out_z[i], out_y[i] = privatize_window(Z[i], int(y[i]), cfg, classes, KeyedStream(key, f"{cfg}|{wid}"))
    return out_z, out_y


# ---- the server's debiasing ---------------------------------------------------------------------

@dataclass
class ClassModel:
    prior: np.ndarray  # (classes,)
    mean: np.ndarray  # (classes, d) standardized units, of the released columns
    var: np.ndarray  # (classes, d)
    columns: list[int] | None = None  # the released columns (None: all)
    width: int = 0  # all columns


def rr_matrix(eps: float, classes: int) -> np.ndarray:
    keep = rr_keep(eps, classes)
    return np.full((classes, classes), (1 - keep) / (classes - 1)) + np.eye(classes) * (keep - (1 - keep) / (classes - 1))


def debias(Z: np.ndarray, y: np.ndarray, cfg: LdpConfig, classes: int, var_floor: float = 1e-3) -> ClassModel:
    """Per-class prior, mean and variance of the standardized features, unbiased up to clipping.

    With T[i, j] = P(reported j | true i) and S[j] = sum of rows reported j / N, E[S] = T^T diag(prior)
    mean; the same for the counts and second moments, so one linear solve per moment undoes the labels'
    noise. Piecewise's second moment is debiased through its known variance; Duchi's carries no
    information about it (|output| is constant), so its classes share the variance of the pooled
    debiased means' spread plus a floor."""
    Z_full_width = Z.shape[1]
    if cfg.features is not None:  # estimate the released columns; the others stay at the midpoint
        Z = Z[:, list(cfg.features)]
    n, d = Z.shape
    k = cfg.coordinates(d)
    Tinv_t = np.linalg.inv(rr_matrix(cfg.epsilon_labels, classes)).T
    onehot = np.eye(classes)[y]
    prior = np.clip(Tinv_t @ onehot.mean(0), 1e-3, None)
    prior /= prior.sum()
    first = Tinv_t @ (onehot.T @ Z / n)
    mean = np.clip(first / prior[:, None], -1, 1)
    if cfg.mechanism == "piecewise":
        eps1 = cfg.epsilon_features / k
        t = math.exp(eps1 / 2)
        # E[zhat^2] = (d/k) E[y^2],  E[y^2] = z^2 (1 + 1/(t-1)) + (t+3) / (3 (t-1)^2)
        raw = Tinv_t @ (onehot.T @ (Z**2) / n) / prior[:, None]
        second = (raw * k / d - (t + 3) / (3 * (t - 1) ** 2)) / (1 + 1 / (t - 1))
        var = np.clip(second - mean**2, var_floor, 1.0)
    else:
        var = np.full((classes, d), max(var_floor, float(np.var(mean)) + 0.05))
    return ClassModel(prior, mean, var, list(cfg.features) if cfg.features is not None else None, Z_full_width)


def synthetic_training_rows(cm: ClassModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows (standardized features, class) drawn from the debiased per-class Gaussians."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(cm.prior), size=n, p=cm.prior)
    Z = np.clip(cm.mean[y] + rng.normal(size=(n, cm.mean.shape[1])) * np.sqrt(cm.var[y]), -1, 1)
    if cm.columns is None:
        return Z, y
    full = np.zeros((n, cm.width))  # unreleased columns: the midpoint (the trainer zeroes their weights)
    full[:, cm.columns] = Z
    return full, y
