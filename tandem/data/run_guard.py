"""Ingest worker processes die with their run, and never write for a run that is gone.

A run kill -9'd leaves its forkserver and pool workers orphaned; they would go on writing the killed
run's chunk while a rerun starts. Each worker (and the forkserver, which imports this module first)
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, Linux) and watches the
run's pid from a daemon thread; `require_run` is checked again right before the table commit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
_run_pid: int | None = None


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watcher thread alone
        pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(pid: int, parent: int) -> None:
    while alive(pid) and os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)  # the run is gone: nothing this process holds may be written


def guard(run_pid: int) -> None:
    """In a worker: die with the parent (the forkserver) and with the run (`run_pid`)."""
    global _run_pid
    _run_pid = run_pid
    _die_with_parent()
    threading.Thread(target=_watch, args=(run_pid, os.getppid()), daemon=True, name="tandem-run-guard").start()


def require_run() -> None:
    """Before writing: exit at once when this worker's run is gone."""
    if _run_pid is not None and not alive(_run_pid):
        os._exit(1)


def _in_forkserver_preload() -> bool:
    """Whether this import runs inside multiprocessing's forkserver main loop (its preload)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_code.co_filename.endswith("multiprocessing/forkserver.py"):
            return True
        frame = frame.f_back
    return False


# Imported as the forkserver's first preload: the forkserver, a child of the run, exits with it.
if _in_forkserver_preload():
    threading.Thread(target=_watch, args=(os.getppid(), os.getppid()), daemon=True, name="tandem-run-guard").start()
