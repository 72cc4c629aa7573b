"""How the ingest recognises the reference set's windows in an upload (`tandem.data.limits.ReferenceKeys`),
chosen by measuring, once per run: by quantized feature values where they are distinctive, else by
the test devices' identity (pseudonyms, window ids), and the false-match rate stated either way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tandem.contract import schema
from tandem.data import table as accepted
from tandem.data.limits import ReferenceKeys, distinctive, feature_digests, features_frame
from tandem.data.reference import ReferenceUser
from tandem.data.store import Store
from tandem.task import Task

SAMPLE_ROWS = 20_000  # accepted rows the false-match rate is measured on
MAX_FALSE_MATCH = 0.001  # above this share of accepted rows matching the reference set, values cannot tell them apart


def accepted_sample(store: Store, feature_names, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """Up to `rows` accepted rows' features (an even stride over the latest version)."""
    dt = accepted.open_table(store)
    if dt is None:
        return features_frame(np.empty((0, len(feature_names))), feature_names)
    dataset = dt.to_pyarrow_dataset()
    total = dataset.count_rows()
    if total <= rows:
        return dataset.to_table(columns=list(feature_names)).to_pandas()
    return dataset.take(np.linspace(0, total - 1, rows).astype(np.int64), columns=list(feature_names)).to_pandas()


def reference_keys(store: Store, users: list[ReferenceUser], task: Task) -> ReferenceKeys:
    """The keys of `task`'s reference set `users`."""
    if not users:
        return ReferenceKeys()
    names = schema.of(task).feature_names
    features = features_frame(np.concatenate([u.features for u in users]), names)
    digests = frozenset(feature_digests(features, names))
    pseudonyms = frozenset(p for u in users for p in u.pseudonyms)
    window_ids = frozenset(w for u in users for w in u.window_ids)
    sample = accepted_sample(store, names)
    rate = float(feature_digests(sample, names).isin(digests).mean()) if len(sample) else None
    # a distinctive reference set: its own windows differ in content (features per device as pseudonym)
    own = features.assign(pseudonym=np.concatenate([[u.user_id] * len(u.features) for u in users]))
    if not distinctive(own, names):
        mode, why = "identity", "the reference set's feature vectors repeat (values cannot tell windows apart)"
    elif rate is not None and rate > MAX_FALSE_MATCH:
        mode, why = "identity", f"{rate:.2%} of accepted rows match reference values (more than {MAX_FALSE_MATCH:.1%})"
    else:
        mode, why = "values", "feature vectors are distinctive"
    return ReferenceKeys(digests, pseudonyms, window_ids, mode, rate, len(sample), why, names)
