"""Core ML's rules for updatable models (`tandem.device.rules`): a model a phone would refuse is never released."""

from __future__ import annotations

from tandem.device import rules
from tandem.release.gates.inputs import GateInputs

NAME = "rules"


def judge(g: GateInputs, so_far: dict) -> dict:
    violations = rules.check(g.device)
    return {"passed": not violations, "violations": [str(v) for v in violations]}


def reason(summary: dict, g: GateInputs) -> str:
    return "rules: " + "; ".join(summary["violations"])
