"""When retrying a task helps: a chunk that failed on a conflict or a flaky write may pass again; a
store that did not answer or cannot be reached will not within seconds, and each retry would only
multiply the wait before the run ends in its one line (issue 21: a hanging S3 ran for 540 s)."""

from __future__ import annotations

UNREACHABLE = {"ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError", "ConnectionClosedError"}


def unless_store_unreachable(task, task_run, state) -> bool:
    """Prefect's `retry_condition_fn`: retry, except after the store's endpoint hung or was down."""
    error = getattr(state, "data", None)
    seen = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        if {c.__name__ for c in type(error).__mro__} & UNREACHABLE:
            return False
        error = error.__cause__ or error.__context__
    return True
