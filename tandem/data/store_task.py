"""One store serves one task: its batches, table, ledger and releases share one schema. The first
writer records the task at the store's root (``task.json``); a process serving another task is
refused with one line, before it writes anything (a second task needs its own TANDEM_HOME or
TANDEM_STORE)."""

from __future__ import annotations

from tandem.data.store import Store, get_json, put_json
from tandem.data.store_keys import TASK_RECORD as KEY
from tandem.task import Task


class StoreTaskError(RuntimeError):
    """The store holds another task's data."""


def claim(store: Store, task: Task) -> None:
    """Record `task` as the store's, or refuse when the store holds another task's data."""
    put_json(store, KEY, {"task": task.name, "kind": task.kind}, if_absent=True)
    held = get_json(store, KEY)
    if held.get("task") != task.name:
        raise StoreTaskError(f"the store {store.url} holds task {held.get('task')!r}, this process serves "
                             f"{task.name!r} (TANDEM_TASK): give it its own TANDEM_HOME or TANDEM_STORE")
