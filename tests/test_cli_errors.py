"""Every common mistake ends in one clear line (what is wrong, what to do) and a non-zero exit; a
traceback only with --debug. Runs the real `tandem` entry point in-process (and once as a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.cli.errors import main
from tandem.release import signing
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def tandem(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def one_error_line(code: int, text: str, *words: str) -> str:
    assert code != 0, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def public_key(tandem_home):
    return os.environ["TANDEM_RELEASE_PUBLIC_KEYS"]


def test_no_pseudonym_key(tandem_home, capsys, monkeypatch):
    monkeypatch.delenv("TANDEM_PSEUDONYM_KEY")
    one_error_line(*tandem(capsys, "share", "--source", "synthetic"), "TANDEM_PSEUDONYM_KEY")


def test_encrypted_policy_without_a_key(tandem_home, capsys, monkeypatch):
    monkeypatch.delenv("TANDEM_ENCRYPTION_KEY", raising=False)
    one_error_line(*tandem(capsys, "share", "--source", "synthetic", "--policy", "encrypted"), "TANDEM_ENCRYPTION_KEY")


def test_too_few_users_fails_before_writing_anything(tandem_home, capsys):
    one_error_line(*tandem(capsys, "share", "--source", "synthetic", "--users", "4", "--holdout-every", "5"),
                   "evaluation users")
    assert not (tandem_home / "store" / "incoming").exists()


def test_a_bucket_that_does_not_exist(tandem_home, capsys, monkeypatch, s3_endpoint):
    monkeypatch.setenv("TANDEM_STORE", "s3://no-such-bucket-here/x")
    monkeypatch.setenv("TANDEM_S3_ENDPOINT_URL", s3_endpoint)
    one_error_line(*tandem(capsys, "releases"), "does not exist", "TANDEM_STORE")


def test_no_aws_credentials(tandem_home, s3_endpoint, tmp_path):
    # a process of its own: boto3 caches credentials for the life of a process
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(TANDEM_STORE="s3://some-bucket/x", TANDEM_S3_ENDPOINT_URL=s3_endpoint, PYTHONPATH=str(ROOT),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "releases"], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    one_error_line(done.returncode, done.stdout + done.stderr, "no AWS credentials")


def test_an_s3_endpoint_that_is_down(tandem_home, capsys, monkeypatch, s3_endpoint):
    monkeypatch.setenv("TANDEM_STORE", "s3://some-bucket/x")
    monkeypatch.setenv("TANDEM_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    one_error_line(*tandem(capsys, "releases"), "cannot reach S3")


@pytest.mark.parametrize("url", ["s3:/bucket", "https://bucket.example.com/x"])
def test_a_malformed_store(tandem_home, capsys, monkeypatch, url):
    monkeypatch.setenv("TANDEM_STORE", url)
    one_error_line(*tandem(capsys, "releases"), "TANDEM_STORE")


@pytest.mark.parametrize("args,words", [(["--channel", "../../x"], ["not a channel name"]),
                                        (["--version", "99"], ["no release"]),
                                        (["--version", "../1"], ["not a release version"])])
def test_bad_channel_or_version(tandem_home, capsys, public_key, tmp_path, args, words):
    one_error_line(*tandem(capsys, "pull", "--out", str(tmp_path / "o"), "--public-key", public_key, *args), *words)
    assert not (tmp_path / "o").exists()


def test_pull_without_a_pinned_key(tandem_home, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TANDEM_RELEASE_PUBLIC_KEYS")
    one_error_line(*tandem(capsys, "pull", "--out", str(tmp_path / "o")), "--public-key")


def test_run_without_a_signing_key(tandem_home, capsys, monkeypatch):
    monkeypatch.delenv("TANDEM_SIGNING_KEY")
    one_error_line(*tandem(capsys, "run"), "TANDEM_SIGNING_KEY", "tandem keys create")


def test_a_params_file_with_a_negative_epoch_count(tandem_home, capsys, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"train": {"epochs": -3}}))
    one_error_line(*tandem(capsys, "run", "--params-file", str(params)), "train.epochs")


def test_a_file_that_is_not_an_mlmodel(tandem_home, capsys, tmp_path):
    bogus = tmp_path / "model.mlmodel"
    bogus.write_bytes(b"this is not a protobuf \xff\xff\xff")
    one_error_line(*tandem(capsys, "device", "check", str(bogus)), "not a Core ML model")


def test_keys_create_writes_a_private_file_and_refuses_to_overwrite(tandem_home, capsys, tmp_path):
    code, text = tandem(capsys, "keys", "create", "--out-dir", str(tmp_path / "k"))
    assert code == 0, text
    secret = tmp_path / "k" / "release-signing.env"
    assert secret.stat().st_mode & 0o077 == 0
    private = secret.read_text().strip().split("=", 1)[1]
    public = (tmp_path / "k" / "release-public-key.txt").read_text().strip()
    assert signing.public_hex(signing.load_private(private).public_key()) == public
    assert private not in text
    one_error_line(*tandem(capsys, "keys", "create", "--out-dir", str(tmp_path / "k")), "not overwriting")


def test_the_console_script_exits_non_zero_with_one_line_and_debug_shows_the_traceback(tandem_home):
    env = {**os.environ, "TANDEM_STORE": "s3:/bucket", "PYTHONPATH": str(ROOT)}
    plain = subprocess.run([sys.executable, "-m", "tandem.cli", "releases"], capture_output=True, text=True, env=env,
                           cwd=ROOT)
    one_error_line(plain.returncode, plain.stdout + plain.stderr, "TANDEM_STORE")
    debug = subprocess.run([sys.executable, "-m", "tandem.cli", "--debug", "releases"], capture_output=True, text=True,
                           env=env, cwd=ROOT)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_revoke_records_once_and_refuses_what_it_cannot_withdraw(tandem_home, capsys):
    one_error_line(*tandem(capsys, "revoke", "--batch", "0123456789abcdef01234567", "--reason", "poisoned"),
                   "no accepted batch")
    one_error_line(*tandem(capsys, "revoke", "--pseudonym", "hapt-user-05", "--reason", "erasure request"),
                   "not a pseudonym")
    code, text = tandem(capsys, "revoke", "--pseudonym", "ab" * 32, "--reason", "erasure request")
    assert code == 0 and "withdrawn pseudonym" in text, text  # withdrawn, not erased (that is --erase)
    assert len(list((tandem_home / "store" / "ledger" / "revocations").glob("*.json"))) == 1


def test_device_check_of_a_model_without_updatable_layers_exits_non_zero(tmp_path):
    """typer 0.29 returns a `typer.Exit`'s code instead of raising it: the entry point now passes it on
    (this printed its broken rules and exited 0). Through the console script, in a process of its own."""
    import numpy as np
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("input", datatypes.Array(3))], [("output", datatypes.Array(2))])
    builder.add_inner_product("dense", W=np.ones((2, 3)), b=np.zeros(2), input_channels=3, output_channels=2,
                              has_bias=True, input_name="input", output_name="output")
    frozen = tmp_path / "frozen.mlmodel"
    frozen.write_bytes(builder.spec.SerializeToString())
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "device", "check", str(frozen)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "broken rule updatable-network" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["evaluate", "--simulate"], ["audit"]])
def test_a_params_file_with_an_unknown_key_is_refused_in_one_line(tandem_home, capsys, tmp_path, command):
    """Issue 17: a guessed name in --params-file was silently ignored (two full runs lost); now it is
    refused before anything runs, the unknown key named."""
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"train": {"epoch": 3}}))  # the field is `epochs`
    code, text = tandem(capsys, *command, "--params-file", str(params))
    assert code != 0 and "Traceback" not in text, text
    assert "unknown key(s) train.epoch" in " ".join(text.split()), text


@pytest.mark.parametrize("given", [["--workers", "2"], ["--folds", "5"], ["--seeds", "3", "--workers", "2"]])
def test_protocol_options_with_the_rounds_simulation_are_refused_in_one_line(tandem_home, capsys, given):
    """--folds/--seeds/--workers shape the folds x seeds protocol; with --quick they were silently dropped."""
    code, text = tandem(capsys, "evaluate", "--quick", "--no-flow", "--no-mlflow", *given)
    assert code != 0 and "Traceback" not in text, text
    assert given[0] in text and "rounds simulation" in " ".join(text.split()), text
