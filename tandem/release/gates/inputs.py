"""What every release gate may look at: one candidate, the users it is judged on, the thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tandem.data.reference import ReferenceUser
from tandem.device.knn import release_files
from tandem.device.runtime import DeviceModel
from tandem.device.update_policy import UpdatePolicy
from tandem.release.params import GateThresholds
from tandem.task import Task
from tandem.task.kinds import Kind, kind_of
from tandem.training import model
from tandem.training.device_update import policy_for


@dataclass
class GateInputs:
    """`users`: whom the candidate is scored and compared with production on (held-out pseudonyms);
    `test_devices`: the reference set, on which the update gate personalizes (a device updates on its
    own clean data) and whose raw recordings make the golden vectors."""

    task: Task
    device: DeviceModel  # the candidate, loaded from its bytes as a phone would
    result: model.TrainResult  # the torch network it was converted from
    users: list[ReferenceUser]
    test_devices: list[ReferenceUser]
    thresholds: GateThresholds
    production: tuple[str, DeviceModel] | None = None  # (version, model) of the production release
    train_frame: object = None  # the rows trained on (a DataFrame), for the baseline and membership
    kind: Kind = field(init=False)

    def __post_init__(self):
        self.kind = kind_of(self.task)

    @property
    def gated_users(self) -> list[ReferenceUser]:
        return self.test_devices[: self.thresholds.personalization_users]

    @property
    def personal_models(self) -> dict[str, DeviceModel]:
        """The personal models the release ships beside the candidate (the k-NN pipeline, when the task uses one)."""
        return {name: DeviceModel.load(raw)
                for name, raw in release_files(self.device, self.task.device.knn_neighbors).items()}

    @property
    def policy(self) -> UpdatePolicy:
        """The app's update policy as the task's devices run it (task.yaml `device`)."""
        return policy_for(self.task)

    def trained_targets(self) -> np.ndarray | None:
        """The training rows' targets (class indices, or values), when known."""
        if self.train_frame is None or not len(self.train_frame):
            return None
        return self.kind.targets(self.train_frame["label"].to_numpy())
