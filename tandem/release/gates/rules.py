"""Core ML's rules for updatable models (`tandem.device.rules`), on the network and on the personal models shipped
beside it: a model a phone would refuse is never released."""

from __future__ import annotations

from tandem.device import rules
from tandem.release.gates.inputs import GateInputs

NAME = "rules"


def judge(g: GateInputs, so_far: dict) -> dict:
    violations = rules.check(g.device)
    for name, personal in g.personal_models.items():
        violations += [rules.Violation(v.rule, f"{name}: {v.message}") for v in rules.check(personal)]
    return {"passed": not violations, "violations": [str(v) for v in violations]}


def reason(summary: dict, g: GateInputs) -> str:
    return "rules: " + "; ".join(summary["violations"])
