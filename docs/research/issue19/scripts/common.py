"""Shared helpers: inner user-disjoint CV on one outer fold's SHARING users only."""
import os, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np, torch
torch.set_num_threads(1)
from tandem.contract.features import CLASSES
from tandem.evaluation.protocol_data import fold_split, sides, server_data
from tandem.evaluation.tuning import tuned_config
from tandem.fleet.users import task_fleet

N_OUTER = 3

def load_users():
    users = task_fleet()
    for u in users:
        u.features
    return users

def inner_folds(users, outer_fold, n_inner=4):
    """Yield (inner_fold, inner_train_users, inner_eval_users) built only from the outer fold's sharing users."""
    sharers, _never = fold_split(users, outer_fold, N_OUTER)
    for j in range(n_inner):
        ev = [u for i, u in enumerate(sharers) if i % n_inner == j]
        tr = [u for i, u in enumerate(sharers) if i % n_inner != j]
        yield j, tr, ev

def train_cfg(outer_fold, seed, **upd):
    cfg = tuned_config(outer_fold, N_OUTER)
    return cfg.model_copy(update={"seed": seed, **upd})

def embed(net, X):
    """The last hidden layer (after ReLU) of the generic network."""
    with torch.no_grad():
        z = (torch.as_tensor(X, dtype=torch.float32) - net.mean) / net.std
        for layer in net.body:
            z = torch.relu(layer(z))
    return z.double().numpy()

def proba(net, X):
    from tandem.training import model
    return model.predict_proba(net, X)
