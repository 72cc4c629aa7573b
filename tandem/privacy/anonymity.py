"""k-anonymity of the quasi-identifiers (device metadata): measuring it over a set of rows, and the
server's enforcement (generalize further, or suppress) before a snapshot."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from tandem.privacy.forms.anonymized import _level_of, generalize_frame, top_level


def k_anonymity(frame, quasi_identifiers: Sequence[str], k: int = 5) -> tuple[int, list[dict]]:
    """k-anonymity of `frame` over the quasi-identifier columns.

    Returns (size of the smallest group of rows sharing all quasi-identifier values, or 0 for no
    rows; the groups smaller than k as ``{"values": {column: value}, "size": n}``, smallest first).
    The frame is k-anonymous when the smallest group has at least k rows (no violating groups).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    quasi_identifiers = list(quasi_identifiers)
    if not quasi_identifiers:
        raise ValueError("at least one quasi-identifier column is needed")
    missing = [c for c in quasi_identifiers if c not in frame.columns]
    if missing:
        raise KeyError(f"quasi-identifier columns not in the frame: {missing}")
    if len(frame) == 0:
        return 0, []
    sizes = frame.groupby(quasi_identifiers, dropna=False, sort=True, observed=True).size()
    violating = [
        {"values": dict(zip(quasi_identifiers, key if isinstance(key, tuple) else (key,))), "size": int(size)}
        for key, size in sizes[sizes < k].sort_values(kind="stable").items()
    ]
    return int(sizes.min()), violating


def enforce_k(frame: pd.DataFrame, k: int, max_suppression: float, quasi_identifiers: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Make every quasi-identifier combination in `frame` cover at least k distinct users
    (pseudonyms), Datafly-style: while some combination covers fewer than k users, either suppress
    those users' rows in it (when they are at most `max_suppression` of all users) or generalize
    the column with the most distinct values one level further. `quasi_identifiers`: the task's.
    Returns (frame, report)."""
    qi = list(quasi_identifiers)
    levels = {c: max((_level_of(c, v) for v in frame[c].unique()), default=0) for c in qi}
    out = generalize_frame(frame, levels) if len(frame) else frame.copy()
    users = int(out["pseudonym"].nunique())
    steps, suppressed_rows, suppressed_users = [], 0, 0
    while len(out):
        per_user = out.drop_duplicates(["pseudonym", *qi])
        smallest, violating = k_anonymity(per_user, qi, k=k)
        if not violating:
            break
        small_users = sum(g["size"] for g in violating)
        can_generalize = [c for c in qi if levels[c] < top_level(c)]
        if small_users <= max_suppression * users or not can_generalize:
            keys = pd.MultiIndex.from_frame(out[qi])
            bad = pd.MultiIndex.from_tuples([tuple(g["values"][c] for c in qi) for g in violating], names=qi)
            drop = keys.isin(bad)
            suppressed_rows += int(drop.sum())
            suppressed_users += small_users
            steps.append({"suppress": {"groups": len(violating), "users": small_users, "rows": int(drop.sum())}})
            out = out[~drop].reset_index(drop=True)
            continue
        column = max(can_generalize, key=lambda c: (out[c].nunique(), -qi.index(c)))
        levels[column] += 1
        steps.append({"generalize": column, "to_level": levels[column]})
        out = generalize_frame(out, {column: levels[column]})
    smallest_users = k_anonymity(out.drop_duplicates(["pseudonym", *qi]), qi, k=1)[0] if len(out) else 0
    smallest_rows = k_anonymity(out, qi, k=1)[0] if len(out) else 0
    report = {
        "k": k, "quasi_identifiers": qi, "unit": "distinct users (pseudonyms) per combination",
        "levels": levels, "steps": steps, "suppressed_rows": suppressed_rows, "suppressed_user_groups": suppressed_users,
        "rows_in": int(len(frame)), "rows_out": int(len(out)), "users_in": users,
        "smallest_group_users": int(smallest_users), "smallest_group_rows": int(smallest_rows),
        "satisfied": bool(len(out) == 0 or smallest_users >= k), "measured_with": "tandem.privacy.anonymity.k_anonymity",
    }
    return out, report
