"""The evaluation's methods: one module each behind one interface (`base.Method`, modelled on Flower's
`Strategy`: fit on the sharing users, personalize on a user's labelled rows, evaluate on its held-out
rows) and one line each in `METHODS`. A task kind names the methods its protocol compares
(`tandem.task.kinds`: `protocol_methods`); a new method is a module here plus its line below.
"""

from __future__ import annotations

from tandem.evaluation.methods.base import Fitted, Fold, Method, Personal
from tandem.evaluation.methods.federated import Federated
from tandem.evaluation.methods.local_only import LocalOnly
from tandem.evaluation.methods.own_mean import OwnMean
from tandem.evaluation.methods.tandem_server import Tandem

METHODS: dict[str, Method] = {
    "tandem": Tandem(),  # the server's model on the shared rows, personalized by the app's policy
    "fedavg": Federated(rows="shared"),
    "fedavg_all_local": Federated(rows="pool"),  # every local pool row: twice the server's data
    "fedprox": Federated(rows="shared", proximal=True),
    "fedper": Federated(rows="shared", personal=("head",)),
    "local_only": LocalOnly(),
    "own_mean": OwnMean(),
}

__all__ = ["METHODS", "Fitted", "Fold", "Method", "Personal"]
