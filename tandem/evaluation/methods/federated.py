"""The federated rivals on the sharing users (one FedAvg, `tandem.training.fl_baselines.federate`):
FedAvg on the shared rows (the server's data volume) or on every local pool row, FedProx (a proximal
term) and FedPer (the head stays on the clients); each then personalized by the app's policy."""

from __future__ import annotations

from dataclasses import dataclass

from tandem.evaluation.methods.base import DeviceMethod, Fitted, Fold, to_device
from tandem.training.federated import Client
from tandem.training.fl_baselines import FLConfig, federate


@dataclass
class Federated(DeviceMethod):
    rows: str = "shared"  # which of a sharing user's rows its client trains on: "shared" or "pool"
    proximal: bool = False  # FedProx: the fold's fedprox_mu
    personal: tuple[str, ...] = ()  # layers kept on the clients: ("head",) is FedPer
    rival = True

    def fit(self, fold: Fold) -> Fitted:
        clients = [Client(s.X[getattr(s, self.rows)], s.y[getattr(s, self.rows)]) for s in fold.sharers]
        cfg = FLConfig(rounds=fold.fl_rounds, local_epochs=fold.fl_local_epochs, hidden_sizes=list(fold.train.hidden_sizes),
                       seed=fold.seed, mu=fold.fedprox_mu if self.proximal else 0.0, personal=self.personal)
        return Fitted(to_device(federate(clients, cfg, n_classes=fold.kind.n_outputs), fold), fold.policy)
