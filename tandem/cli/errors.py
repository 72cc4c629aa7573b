"""One clear line for every mistake: what is wrong and what to do, a non-zero exit, and a traceback
only with ``--debug``. The `tandem` console script enters here."""

from __future__ import annotations

import importlib
import sys

import click
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, PartialCredentialsError
from google.protobuf.message import DecodeError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from tandem.task import TaskError

# Tandem's own errors whose message is the one line (matched by name: their modules derive from the
# active task, and this module must import before a bad TANDEM_TASK is reported)
OWN_ERRORS = {"ReleaseError", "SigningKeyError", "RevocationError", "ReferenceError", "LeaseTimeout",
              "StoreTaskError", "TaskError"}

console = Console(stderr=True)


def _validation(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or e.title
    if e.title == "Settings":
        where = f"TANDEM_{where.upper()}" if where and not where.startswith("TANDEM_") else where
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    if e.title == "Settings" and "TANDEM_" in msg:
        return msg + more
    return f"{e.title} {where}: {msg}{more}"


def _client_error(e: ClientError) -> str:
    code = e.response.get("Error", {}).get("Code", "")
    bucket = e.response.get("Error", {}).get("BucketName", "")
    if code == "NoSuchBucket":
        return f"the S3 bucket {bucket or ''} does not exist: create it or fix TANDEM_STORE"
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return f"S3 refused the request ({code}): check the AWS credentials and the bucket policy"
    return f"S3 error {code}: {e.response.get('Error', {}).get('Message', '')}".strip()


def explain(e: BaseException) -> str | None:
    """The one line for a known mistake, or None (an unexpected error)."""
    if isinstance(e, ValidationError):
        return _validation(e)
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the S3 store"
    if isinstance(e, EndpointConnectionError):
        return f"cannot reach S3 at {e.kwargs.get('endpoint_url', '?')}: is the endpoint up? (TANDEM_S3_ENDPOINT_URL)"
    if isinstance(e, ClientError):
        return _client_error(e)
    if isinstance(e, DecodeError):
        return "the file is not a Core ML model (.mlmodel protobuf): pass the model.mlmodel of a release"
    if any(c.__name__ in OWN_ERRORS and c.__module__.startswith("tandem.") for c in type(e).__mro__):
        return str(e)
    if isinstance(e, RuntimeError) and str(e).startswith(("TANDEM_", "no evaluation users")):
        return str(e)
    if isinstance(e, FileNotFoundError) and "tandem share" in str(e):
        return str(e)
    if isinstance(e, ValueError) and type(e) is ValueError and str(e):
        return str(e).splitlines()[0]
    return None


def _app(argv: list[str]):
    """The full CLI, which derives its schema from TANDEM_TASK; if that names no task, `init` and
    `tasks` still run (they make and list tasks) and anything else ends in the task's one line."""
    try:
        return importlib.import_module("tandem.cli.main").app
    except TaskError:
        if argv[:1] in (["init"], ["tasks"]):
            return importlib.import_module("tandem.cli.tasks").bootstrap
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        app = _app(argv)
        app(args=argv, prog_name="tandem", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        console.print("aborted")
        return 130
    except Exception as e:
        if debug:
            raise
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()  # typer's own (vendored) click usage errors: their message is the one line
            return e.exit_code
        line = explain(e)
        if line is None:
            line = f"unexpected {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''} (rerun with --debug for the traceback)"
        console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())
