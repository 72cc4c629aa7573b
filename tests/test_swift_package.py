"""The Swift package builds and its command line answers (the other Swift tests use the same binary)."""

from tests.swift_build import run_device


def test_tandem_device_builds_and_prints_its_version(tandem_device):
    assert run_device(tandem_device, "version").stdout.strip() == "0.1.0"


def test_an_unknown_command_is_refused_with_usage(tandem_device):
    done = run_device(tandem_device, "no-such-command", check=False)
    assert done.returncode == 2 and "usage: tandem-device" in done.stderr
