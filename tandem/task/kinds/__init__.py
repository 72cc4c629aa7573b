"""What differs between a classifier and a regressor: two implementations of one interface, one module
each, instead of `if CLASSIFICATION` branches (issue 17). A caller asks the task's kind (`kind_of(task)`)
for its targets and declared labels, the label's type and validation rule, the loss and the Core ML head,
the metrics and their plot, which direction is better and the baseline a release must beat (the gates'),
the device update's loss and rate, and the evaluation's methods and claims. Nothing else in Tandem
branches on the kind (`tests/test_task_travels.py` checks). A new kind: a module here answering the same
methods, and one line in `KINDS`.
"""

from __future__ import annotations

from tandem.task.definition import Task
from tandem.task.kinds.classification import Classification
from tandem.task.kinds.regression import Regression

Kind = Classification | Regression

# The kinds, by the `target.kind` a task.yaml states: one line each.
KINDS = {
    "classes": lambda target: Classification(tuple(target.labels)),
    "numeric": lambda target: Regression(target.unit, target.model_dump()),
}


def kind_of(task: Task) -> Kind:
    """The task's kind, from its target."""
    return KINDS[task.target.kind](task.target)


__all__ = ["KINDS", "Classification", "Kind", "Regression", "kind_of"]
