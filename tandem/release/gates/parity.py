"""Parity: the published .mlmodel, run by the device runtime, computes what torch computed."""

from __future__ import annotations

import numpy as np

from tandem.device.runtime import DeviceModel
from tandem.release.gates.inputs import GateInputs
from tandem.task.kinds import Kind
from tandem.training import model

NAME = "parity"


def parity_gate(kind: Kind, device: DeviceModel, torch_model, X: np.ndarray, tolerance: float) -> dict:
    """The runtime's probabilities (a regressor's outputs, relative to the target's scale) against
    torch's on the evaluation rows."""
    diff, same_labels = kind.parity(kind.device_outputs(device, X), model.outputs(torch_model, X))
    return {"passed": diff <= tolerance and same_labels, "max_abs_diff": diff, "tolerance": tolerance,
            "labels_identical": same_labels, "rows": len(X)}


def judge(g: GateInputs, so_far: dict) -> dict:
    X = np.concatenate([u.features for u in g.users + g.test_devices])
    return parity_gate(g.kind, g.device, g.result.model, X, g.thresholds.parity_tolerance)


def reason(summary: dict, g: GateInputs) -> str:
    return (f"parity: max |runtime - torch| = {summary['max_abs_diff']:.2e} (tolerance {summary['tolerance']:.0e}), "
            f"labels identical: {summary['labels_identical']}")
