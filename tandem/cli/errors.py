"""One clear line for every mistake: what is wrong and what to do, a non-zero exit, and a traceback
only with ``--debug``. The `tandem` console script enters here.

Kept light on purpose: `tandem --help` must not load torch, Prefect, MLflow or GX, so this module
imports only what every command needs and recognizes heavy libraries' errors by class name."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from tandem.settings import prefect_environment

# Tandem's own errors whose message is the one line (matched by name: this module stays light, it
# imports before any command's heavy modules)
OWN_ERRORS = {"ReleaseError", "SigningKeyError", "RevocationError", "ReferenceError", "LeaseTimeout",
              "StoreTaskError", "TaskError", "ParamsError", "PointerError"}

console = Console(stderr=True)

# Exit codes a CI script can rely on: 0 done, 1 an error, 3 a candidate the gates blocked (nothing
# published), 130 interrupted.
EXIT_ERROR, EXIT_BLOCKED = 1, 3


def _validation(e) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or e.title
    if e.title == "Settings":
        where = f"TANDEM_{where.upper()}" if where and not where.startswith("TANDEM_") else where
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    if e.title == "Settings" and "TANDEM_" in msg:
        return msg + more
    return f"{e.title} {where}: {msg}{more}"


def _client_error(e) -> str:
    code = e.response.get("Error", {}).get("Code", "")
    bucket = e.response.get("Error", {}).get("BucketName", "")
    if code == "NoSuchBucket":
        return f"the S3 bucket {bucket or ''} does not exist: create it or fix TANDEM_STORE"
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return f"S3 refused the request ({code}): check the AWS credentials and the bucket policy"
    return f"S3 error {code}: {e.response.get('Error', {}).get('Message', '')}".strip()


def _names(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def _where() -> str:
    home = os.environ.get("TANDEM_HOME", ".tandem")
    return f"TANDEM_HOME ({home})" + (f" or TANDEM_STORE ({os.environ['TANDEM_STORE']})" if os.environ.get("TANDEM_STORE") else "")


def _os_error(e: OSError) -> str | None:
    what = f" writing {e.filename}" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{what}: free space under {_where()}, or point them at a larger disk, and rerun"
    if e.errno == errno.EROFS or (e.errno in (errno.EACCES, errno.EPERM) and e.filename):
        return (f"cannot write{what or ' the store'}: the file system is read-only or not writable by this user; "
                f"make {_where()} writable, or point them at a writable folder, and rerun")
    return None


def _sqlite(e: BaseException) -> str | None:
    text = str(e).lower()
    if "database or disk is full" in text or "no space left" in text:
        return f"the disk is full (a local database could not grow): free space under {_where()} and rerun"
    if "readonly database" in text or "read-only file system" in text:
        return f"a local database is read-only: make {_where()} writable and rerun"
    return None


def _prefect_start(e: BaseException) -> str | None:
    if "ephemeral Prefect API server" in str(e) or "ephemeral server" in str(e).lower():
        return ("the temporary Prefect server did not start in time (a busy machine or a first run's migrations): "
                "rerun, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with `tandem stack up` "
                "(or set PREFECT_API_URL to a running server)")
    return None


def explain_one(e: BaseException) -> str | None:
    """The one line for one known exception, or None."""
    names = _names(e)
    if "ValidationError" in names and hasattr(e, "errors") and hasattr(e, "title"):
        return _validation(e)
    if names & {"NoCredentialsError", "PartialCredentialsError"}:
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the S3 store"
    if names & {"ReadTimeoutError", "ConnectTimeoutError"}:
        return (f"S3 at {getattr(e, 'kwargs', {}).get('endpoint_url', '?')} did not answer in time: is the endpoint "
                "healthy? (TANDEM_S3_ENDPOINT_URL; the wait is bounded by TANDEM_S3_TIMEOUT_SECONDS); rerun when it is")
    if "ConnectionClosedError" in names:
        return (f"S3 at {getattr(e, 'kwargs', {}).get('endpoint_url', '?')} closed the connection without an answer: "
                "is the endpoint healthy? (TANDEM_S3_ENDPOINT_URL); rerun when it is")
    if "EndpointConnectionError" in names:
        return f"cannot reach S3 at {e.kwargs.get('endpoint_url', '?')}: is the endpoint up? (TANDEM_S3_ENDPOINT_URL)"
    if "ClientError" in names and hasattr(e, "response"):
        return _client_error(e)
    if "DecodeError" in names and type(e).__module__.startswith("google.protobuf"):
        return "the file is not a Core ML model (.mlmodel protobuf): pass the model.mlmodel of a release"
    if any(c.__name__ in OWN_ERRORS and c.__module__.startswith("tandem.") for c in type(e).__mro__):
        return str(e)
    if isinstance(e, OSError) and (line := _os_error(e)):
        return line
    if names & {"OperationalError", "MlflowException", "DatabaseError"} and (line := _sqlite(e)):
        return line
    if (line := _prefect_start(e)) and isinstance(e, (RuntimeError, TimeoutError)):
        return line
    if isinstance(e, RuntimeError) and str(e).startswith(("TANDEM_", "no evaluation users")):
        return str(e)
    if isinstance(e, FileNotFoundError) and "tandem share" in str(e):
        return str(e)
    if isinstance(e, ValueError) and type(e) is ValueError and str(e):
        return str(e).splitlines()[0]
    return None


def _chain(e: BaseException):
    """The exception and what it was raised from or during (MLflow and Prefect wrap the cause)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


LOW_DISK_BYTES = 16 * 2**20  # below this, a failing write is the likeliest cause of an unexplained error


def _low_disk() -> str | None:
    """A folder Tandem writes to (its home, Prefect's home, a local store) whose disk is (nearly) full."""
    for name, default in (("TANDEM_HOME", ".tandem"), ("PREFECT_HOME", None), ("TANDEM_STORE", None)):
        value = os.environ.get(name, default)
        if not value or value.startswith("s3://"):
            continue
        path = os.path.abspath(os.path.expanduser(value))
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        try:
            if shutil.disk_usage(path).free < LOW_DISK_BYTES:
                return f"{name} ({value})"
        except OSError:
            continue
    return None


def explain(e: BaseException) -> str | None:
    """The one line for a known mistake (the first known one along the chain of causes), or None.
    An error that is only a symptom (Prefect's server answering 500, its temporary server exiting,
    anything unexplained) while a disk Tandem writes to is full is reported as the full disk."""
    line = next((found for link in _chain(e) if (found := explain_one(link)) is not None), None)
    if line is None or line == _prefect_start(e) or any("500 Internal Server Error" in str(x) for x in _chain(e)):
        full = _low_disk()
        if full:
            return f"the disk is full under {full}: free space there, or point it at a larger disk, and rerun"
    return line


def _app(argv: list[str]):
    """The full CLI; should it fail to load with a TaskError, `init` and `tasks` still run (they make and
    list tasks) and anything else ends in the task's one line."""
    try:
        return importlib.import_module("tandem.cli.main").app
    except Exception as e:
        if type(e).__name__ == "TaskError" and argv[:1] in (["init"], ["tasks"]):
            return importlib.import_module("tandem.cli.tasks").bootstrap
        raise


def _exit_code(rv) -> int:
    """What the command returned: typer (0.29) returns a `typer.Exit`'s code instead of raising it."""
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if debug:
        os.environ["TANDEM_DEBUG"] = "1"  # the flows' engine logs reach the terminal only then
    prefect_environment(debug)  # before anything imports Prefect, which reads its settings on import
    try:
        app = _app(argv)
        return _exit_code(app(args=argv, prog_name="tandem", standalone_mode=False))
    except (click.exceptions.Exit, typer.Exit) as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        return 130
    except Exception as e:
        if debug:
            raise
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()  # typer's own (vendored) click usage errors: their message is the one line
            return e.exit_code or EXIT_ERROR
        line = explain(e)
        if line is None:
            line = f"unexpected {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''} (rerun with --debug for the traceback)"
        console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        return EXIT_ERROR


def entry() -> None:
    sys.exit(main())
