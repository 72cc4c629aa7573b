"""Held-out pseudonyms: a share of the pseudonyms in the accepted data that training never sees, so
the production flow can score candidates and run the update gate on users from the store itself (a
group split: all of a pseudonym's rows are on one side).

Which pseudonyms are held out is a keyed hash of the pseudonym (the key: the model name), so it
is stable: a pseudonym held out once stays held out in every later snapshot, and the production
model was never trained on the users a candidate is compared with it on.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd

from tandem.contract import features
from tandem.data.reference import ReferenceUser
from tandem.task import Task


def _position(pseudonym: str, key: str) -> float:
    """The pseudonym's place in [0, 1), uniform and fixed for a key."""
    digest = hmac.new(key.encode(), pseudonym.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(pseudonyms, share: float, key: str) -> set[str]:
    """The pseudonyms whose keyed hash falls below `share`. With two or more pseudonyms, at least one
    is held out and at least one trained on (a tiny fleet takes the lowest hashes instead)."""
    unique = sorted(set(pseudonyms))
    if share <= 0 or len(unique) < 2:
        return set()
    position = {p: _position(p, key) for p in unique}
    chosen = {p for p in unique if position[p] < share}
    if 0 < len(chosen) < len(unique):
        return chosen
    ranked = sorted(unique, key=position.get)
    return set(ranked[: min(len(unique) - 1, max(1, round(share * len(unique))))])


def split(frame: pd.DataFrame, share: float, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows to train on, the held-out pseudonyms' rows)."""
    held = frame["pseudonym"].isin(held_out(frame["pseudonym"], share, key))
    return frame[~held], frame[held]


def as_users(frame: pd.DataFrame, task: Task) -> list[ReferenceUser]:
    """One user per held-out pseudonym of `task`, rows in capture order (features only: the store has no
    raw samples of users; golden vectors come from the reference set)."""
    featurization = features.of(task)
    users = []
    for pseudonym, rows in frame.sort_values(["captured_at", "window_id"]).groupby("pseudonym", sort=True):
        n = len(rows)
        users.append(ReferenceUser(str(pseudonym), rows[list(featurization.feature_names)].to_numpy(np.float64),
                                   featurization.kind.labels(rows["label"].to_numpy()), np.empty((n, 0)),
                                   rows["window_id"].astype(str).tolist(),
                                   pd.to_datetime(rows["captured_at"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[ms]"),
                                   kind=featurization.kind))
    return users
