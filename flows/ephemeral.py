"""No orphan servers: in ephemeral mode Prefect starts its API server as a child process, and a run
killed with SIGKILL never stops it. A tiny watchdog process (in its own session, so a kill of the
run's process group does not take it down first) stops the server once its parent is gone."""

from __future__ import annotations

import os
import subprocess
import sys

from prefect.server.api.server import SubprocessASGIServer

# The watchdog: exits when the server is gone; stops it when the run that started it is gone
# (its parent pid changes once the parent dies).
WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(server):
    if os.getppid() != parent:
        os.kill(server, signal.SIGTERM)
        for _ in range(50):
            if not alive(server):
                sys.exit(0)
            time.sleep(0.1)
        os.kill(server, signal.SIGKILL)
        sys.exit(0)
    time.sleep(0.5)
"""

_guarded: set[int] = set()


def guard_ephemeral_server() -> None:
    """Start a watchdog for each ephemeral server this process started (once per server)."""
    for server in list(SubprocessASGIServer._instances.values()):
        process = getattr(server, "server_process", None)
        if process is None or process.pid in _guarded or process.poll() is not None:
            continue
        subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(process.pid)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        _guarded.add(process.pid)
