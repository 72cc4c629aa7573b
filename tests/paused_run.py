"""`python -m tests.paused_run run ...`: `tandem run`, pausing for TANDEM_TEST_PAUSE_SECONDS at the
start of the leased gate-and-publish section, then going on as the real run.

Fault injection, the one patch of tests/test_hostile_runs.py: gating and publishing take about half a
second, too short a window to SIGKILL a process in reliably from outside, so a killed run could land
just after it (and then the test would check nothing about a lease held by a dead run)."""

import os
import time

from tandem.release import candidate

real_gate_and_publish = candidate.gate_and_publish


def paused_gate_and_publish(*args, **kwargs):
    time.sleep(float(os.environ["TANDEM_TEST_PAUSE_SECONDS"]))
    return real_gate_and_publish(*args, **kwargs)


candidate.gate_and_publish = paused_gate_and_publish  # tandem.pipeline calls it through the module

if __name__ == "__main__":
    from tandem.cli.errors import entry

    entry()
