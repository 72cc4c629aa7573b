"""Fault injection for tests/test_worker_faults.py, loaded only into that test's forkserver (a preload):
fetching a batch whose key names "poison" SIGKILLs the worker process, as the kernel's OOM killer or a
crash in a native decoder would. No file we can craft is known to crash pyarrow now, so this is a mock."""

import os
import signal

from tandem.data import ingest

_real = ingest.fetch_with_meta


def _fetch(store, ref):
    if "poison" in ref.key:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(store, ref)


ingest.fetch_with_meta = _fetch
