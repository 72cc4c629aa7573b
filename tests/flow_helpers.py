"""Helpers the flow-level tests share (not fixtures of pytest's: plain functions)."""

from __future__ import annotations

from flows.train_release import train_and_release
from tandem import task as tasks
from tandem.data.store import store_from_settings
from tandem.fleet import devices
from tandem.fleet import users as fleet
from tandem.privacy.policy import load_policy
from tandem.release.params import RunParams
from tandem.settings import Settings

FAST = {"train": {"epochs": 25, "hidden_sizes": [32, 32], "patience": 5}}


def share_synthetic(settings: Settings, n_users: int = 8) -> tuple[list, list]:
    """A small synthetic fleet shares through the same step `tandem share` uses."""
    users = fleet.synthetic_fleet(tasks.resolve("har"), n_users, windows_per_class=10, seed=1)
    shared = devices.share_fleet(settings, store_from_settings(settings), users, fraction=0.8, holdout_every=4,
                                 batch_size=16, policy=load_policy("pseudonymized"))
    return shared.sharers, shared.evaluators


def run_flow(**overrides) -> dict:
    return train_and_release(RunParams.model_validate({**FAST, **overrides}))
