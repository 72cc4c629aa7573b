"""Per-user privacy accounting with Google's `dp-accounting` (privacy loss distributions, PLD).

The unit is the user: everything one user ever released (every shared window's feature and label
release, under every policy) is composed into one (epsilon, delta). Mechanism events are plain
JSON dicts, so the device's ledger and the server's manifest can store them:

- ``{"mechanism": "pure", "epsilon": e}``: any e-DP local randomizer (the Laplace vector
  mechanism, Piecewise, Duchi; k-of-d sampling included). Accounted with the PLD of a generic e-DP
  mechanism, which dominates every e-DP mechanism. ``"laplace"`` (ledger v1) is read as this.
- ``{"mechanism": "randomized_response", "epsilon": e, "classes": k}``: k-ary randomized
  response that keeps the true value with probability e^e / (e^e + k - 1); its exact PLD.
- ``{"mechanism": "gaussian", "sigma": s}``: Gaussian noise of standard deviation s in units of
  the L2 sensitivity (ledger v1 stored ``rho``: s = 1 / sqrt(2 rho)).

The PLD grid is pessimistic (every reported epsilon is an upper bound); for long histories it is
coarsened so a composition stays a few million points at most.
"""

from __future__ import annotations

import json
import math
from collections import Counter

from dp_accounting.pld import common
from dp_accounting.pld import privacy_loss_distribution as pld

FINE_INTERVAL = 1e-4  # dp-accounting's default discretization of privacy loss
MAX_GRID = 1e6  # grid points across the basic-composition range before coarsening (1e-4 up to 100)
LARGE_EPSILON = 200.0  # a single release this loose is accounted by basic composition
NUM_CLASSES = 6  # k of the labels' randomized response unless an event says otherwise


class AccountingError(ValueError):
    """An event the accountant does not know: refusing is safer than guessing."""


def pure_epsilon(event: dict) -> float:
    """An upper bound on the event's epsilon at delta = 0 (infinite for the Gaussian)."""
    m = event.get("mechanism")
    if m in ("pure", "laplace", "randomized_response"):
        return float(event["epsilon"])
    if m == "gaussian":
        return math.inf
    raise AccountingError(f"unknown mechanism {m!r} in privacy event {event!r}")


def normalize(event: dict) -> dict:
    """The canonical form of an event (ledger v1 shapes included); raises AccountingError."""
    m = event.get("mechanism")
    try:
        if m in ("pure", "laplace"):
            eps = float(event["epsilon"])
            out = {"mechanism": "pure", "epsilon": eps}
        elif m == "randomized_response":
            eps = float(event["epsilon"])
            out = {"mechanism": m, "epsilon": eps, "classes": int(event.get("classes", NUM_CLASSES))}
        elif m == "gaussian":
            sigma = float(event["sigma"]) if "sigma" in event else 1 / math.sqrt(2 * float(event["rho"]))
            if not sigma > 0:
                raise ValueError
            return {"mechanism": m, "sigma": sigma}
        else:
            raise AccountingError(f"unknown mechanism {m!r} in privacy event {event!r}")
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise AccountingError(f"malformed privacy event {event!r}") from None
    if not eps > 0:
        raise AccountingError(f"epsilon must be > 0 in privacy event {event!r}")
    return out


def event_pld(event: dict, interval: float = FINE_INTERVAL) -> pld.PrivacyLossDistribution:
    e = normalize(event)
    if e["mechanism"] == "pure":
        return pld.from_privacy_parameters(common.DifferentialPrivacyParameters(e["epsilon"], 0.0),
                                           value_discretization_interval=interval)
    if e["mechanism"] == "randomized_response":
        k = e["classes"]
        # dp-accounting's parameter: probability of answering uniformly at random (over all k)
        p = k / (math.exp(e["epsilon"]) + k - 1)
        return pld.from_randomized_response(p, k, value_discretization_interval=interval)
    return pld.from_gaussian_mechanism(e["sigma"], value_discretization_interval=interval)


def basic_bound(counted: list[tuple[dict, int]], delta: float) -> float:
    """Basic composition (sum of epsilons; Gaussians through zCDP): a valid, loose upper bound."""
    pure = sum(n * pure_epsilon(e) for e, n in counted if normalize(e)["mechanism"] != "gaussian")
    rho = sum(n / (2 * normalize(e)["sigma"] ** 2) for e, n in counted if normalize(e)["mechanism"] == "gaussian")
    return pure + (rho + 2 * math.sqrt(rho * math.log(1 / delta)) if rho else 0.0)


def grid_interval(counted: list[tuple[dict, int]], delta: float) -> float:
    return max(FINE_INTERVAL, basic_bound(counted, delta) / MAX_GRID)


def compose(counted: list[tuple[dict, int]], delta: float, interval: float | None = None) -> float:
    """Epsilon at `delta` of releasing each event its count times (in any order, adaptively)."""
    counted = [(normalize(e), int(n)) for e, n in counted if n > 0]
    # pure releases above LARGE_EPSILON overflow the PLD (exp(epsilon)); they are added by basic
    # composition, still an upper bound: (e1, delta) composed with pure e2 is (e1 + e2, delta)
    large = sum(n * e["epsilon"] for e, n in counted if e.get("epsilon", 0) > LARGE_EPSILON)
    counted = [(e, n) for e, n in counted if e.get("epsilon", 0) <= LARGE_EPSILON]
    if not counted:
        return float(large)
    interval = interval or grid_interval(counted, delta)
    total = None
    for event, n in counted:
        part = event_pld(event, interval)
        part = part.self_compose(n) if n > 1 else part
        total = part if total is None else total.compose(part)
    return float(total.get_epsilon_for_delta(delta)) + large


def count_events(event_lists: list[list[dict]]) -> list[tuple[dict, int]]:
    """[(event, how many times)] of a flat history of events (one list per window)."""
    counter = Counter(json.dumps(normalize(e), sort_keys=True) for events in event_lists for e in events)
    return [(json.loads(k), n) for k, n in sorted(counter.items())]


def user_epsilon(event_lists: list[list[dict]], delta: float) -> float:
    return compose(count_events(event_lists), delta)
