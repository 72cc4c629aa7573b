"""Release gates: no release reaches a channel unless the published .mlmodel passes Core ML's rules
for updatable models, computes what torch computed (parity), improves users when updated on the
device, beats the task's baseline and is not worse than production on the same evaluation users.

Everything here runs the candidate the way a phone would: through `tandem.device`, from its bytes.
A gate is one module here (`NAME`, `judge(inputs, so_far) -> {"passed": ..., numbers}`, `reason(summary,
inputs) -> str`) plus one line in `GATES`; they run in its order (the comparison reads the update's gain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from tandem.data.store import Store
from tandem.device.runtime import DeviceModel
from tandem.release.gates import comparison, membership, parity, rules, update
from tandem.release.gates.comparison import comparison_gate, production_model, scores
from tandem.release.gates.golden_vectors import golden_files
from tandem.release.gates.inputs import GateInputs
from tandem.release.gates.membership import membership_gate
from tandem.release.gates.parity import parity_gate
from tandem.release.gates.update import personalization_summary, update_gate
from tandem.release.params import RunParams
from tandem.task import Task
from tandem.training import model

GATES: dict[str, ModuleType] = {m.NAME: m for m in (rules, parity, update, comparison, membership)}

__all__ = ["GATES", "GateInputs", "GateReport", "comparison_gate", "golden_files", "membership_gate", "parity_gate",
           "personalization_summary", "production_model", "run_gates", "scores", "update_gate"]


@dataclass
class GateReport:
    summary: dict = field(default_factory=dict)  # per gate: passed + numbers; goes into the manifest
    reasons: list[str] = field(default_factory=list)  # why a gate failed, one line each
    files: dict[str, bytes] = field(default_factory=dict)  # extra release files (golden vectors, Swift test)

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def metrics(self) -> dict:
        out = {}
        for gate, values in self.summary.items():
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    out[f"{gate}_{key}"] = float(value)
        return out

    @property
    def thresholds(self) -> dict:
        """The limits the data set (the comparison's floor over the task's baseline), for MLflow's params."""
        c = self.summary.get("comparison", {})
        return {"comparison": {k: c[k] for k in ("baseline", "baseline_is", "floor", "floor_on", "floor_set_by")
                               if k in c}}


def run_gates(task: Task, model_name: str, store: Store, mlmodel: bytes, result: model.TrainResult, users: list,
              test_devices: list, params: RunParams, train_frame=None) -> GateReport:
    """Every gate of `GATES` on the candidate (see `GateInputs` for `users` and `test_devices`); golden
    files when all pass."""
    g = GateInputs(task, DeviceModel.load(mlmodel), result, users, test_devices, params.gates,
                   production_model(model_name, store), train_frame)
    report = GateReport()
    for name, gate in GATES.items():
        report.summary[name] = gate.judge(g, report.summary)
    report.reasons = [gate.reason(report.summary[name], g) for name, gate in GATES.items()
                      if not report.summary[name]["passed"]]
    if report.passed:
        report.files = golden_files(task, g.device, test_devices[0])
    return report
