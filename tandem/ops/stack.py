"""A local production-like stack on 127.0.0.1: S3 (moto), the device gateway (against the stack's S3
store), an MLflow tracking server (SQLite backend, artifacts in S3), a Prefect server, the process work
pool, the deployments and a worker.

Everything lives under ``$TANDEM_HOME/stack/``: one log and one pid file per process, the Prefect and
MLflow databases, and ``stack.json`` (ports, addresses). ``$TANDEM_HOME/stack.env`` holds the settings
a shell sources to use the stack; the worker gets exactly the same settings, so flows run against S3
and the MLflow server with no code change.

Each process is started in its own session (its own process group). A pid file records the pid, the
process's start time and its command line; ``down`` signals a group only after checking that the pid
still belongs to the process ``up`` started, so it never kills an unrelated process that reused the pid.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import boto3
import psutil  # a dependency of dask.distributed
import yaml
from prefect.workers.process import ProcessWorker

from tandem.release import signing

REPO = Path(__file__).resolve().parents[2]  # tandem/ops/stack.py -> the repository
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
WORK_POOL = "tandem-process"
# Work queues in the pool, with their concurrency limits. Both train deployments use "train": a limit
# of 1 means the worker never runs two train-and-release runs (so two publishes) at the same time.
WORK_QUEUES = {"train": 1, "channels": 1}
BUCKET = "tandem"
# moto's dummy credentials (moto accepts any); they are not secrets.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
HOST = "127.0.0.1"
SERVICES = ("moto", "gateway", "mlflow", "prefect-server", "prefect-worker")  # start order; stopped in reverse


class StackError(RuntimeError):
    pass


@dataclass
class Ports:
    s3: int | None = None
    mlflow: int | None = None
    prefect: int | None = None
    gateway: int | None = None


@dataclass
class StackInfo:
    home: str
    ports: dict
    bucket: str
    s3_url: str
    mlflow_url: str
    prefect_url: str
    prefect_api_url: str
    started_at: float = field(default_factory=time.time)
    deployments: list = field(default_factory=list)
    deploy_errors: list = field(default_factory=list)
    gateway_url: str = ""  # where phones (and `tandem share --via`) upload


def stack_dir(home: Path) -> Path:
    return Path(home) / "stack"


def env_file(home: Path) -> Path:
    return Path(home) / "stack.env"


def free_port(exclude: set[int] = frozenset()) -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------------------------------------------
# processes: pid files with identity
# ---------------------------------------------------------------------------------------------------

def _pid_file(home: Path, name: str) -> Path:
    return stack_dir(home) / f"{name}.pid"


def _log_file(home: Path, name: str) -> Path:
    return stack_dir(home) / f"{name}.log"


def _identity(pid: int) -> dict:
    p = psutil.Process(pid)
    return {"pid": pid, "create_time": p.create_time(), "cmdline": p.cmdline()}


def read_pid(home: Path, name: str) -> dict | None:
    try:
        return json.loads(_pid_file(home, name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _same_process(record: dict) -> psutil.Process | None:
    """The live process the record describes, or None (gone, or its pid now belongs to another process)."""
    try:
        p = psutil.Process(record["pid"])
        if abs(p.create_time() - record["create_time"]) > 0.05 or p.cmdline() != record["cmdline"]:
            return None
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        return None


def is_running(home: Path, name: str) -> bool:
    record = read_pid(home, name)
    return bool(record) and _same_process(record) is not None


def _spawn(home: Path, name: str, cmd: list[str], env: dict, cwd: Path | None = None) -> dict:
    log = open(_log_file(home, name), "ab")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(cmd, env=env, cwd=str(cwd or REPO), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    for _ in range(50):  # the command line is readable once exec() happened
        try:
            record = _identity(proc.pid)
            if record["cmdline"]:
                break
        except psutil.NoSuchProcess:
            raise StackError(f"{name} exited at once; see {_log_file(home, name)}:\n{_tail(home, name)}")
        time.sleep(0.02)
    record["name"] = name
    record["log"] = str(_log_file(home, name))
    _pid_file(home, name).write_text(json.dumps(record, indent=2))
    return record


def _tail(home: Path, name: str, lines: int = 25) -> str:
    try:
        return "\n".join(_log_file(home, name).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def stop_process(home: Path, name: str, timeout: float = 15.0) -> dict:
    """Stop the process group `up` started for `name`, if the pid still belongs to it. Returns what it did."""
    record = read_pid(home, name)
    if record is None:
        return {"name": name, "action": "not started"}
    proc = _same_process(record)
    if proc is None:
        _pid_file(home, name).unlink(missing_ok=True)
        return {"name": name, "action": "already gone", "pid": record.get("pid")}
    # the group leader plus every descendant (a flow run may have left the group)
    try:
        victims = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        victims = [proc]
    pgid = record["pid"]
    _signal_all(pgid, victims, signal.SIGTERM)
    gone, alive = psutil.wait_procs(victims, timeout=timeout)
    if alive:
        _signal_all(pgid, alive, signal.SIGKILL)
        gone, alive = psutil.wait_procs(alive, timeout=5)
    _pid_file(home, name).unlink(missing_ok=True)
    return {"name": name, "action": "stopped" if not alive else "still alive", "pid": pgid,
            "pids": [p.pid for p in victims], "alive": [p.pid for p in alive]}


def _signal_all(pgid: int, procs: list[psutil.Process], sig: int) -> None:
    try:
        os.killpg(pgid, sig)  # the group we created with start_new_session (its id is the leader's pid)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


# ---------------------------------------------------------------------------------------------------
# health checks
# ---------------------------------------------------------------------------------------------------

def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_healthy(home: Path, name: str, url: str, timeout: float) -> float:
    t0 = time.monotonic()
    record = read_pid(home, name)
    while time.monotonic() - t0 < timeout:
        if http_ok(url):
            return time.monotonic() - t0
        if record and _same_process(record) is None:
            raise StackError(f"{name} exited before it became healthy; log {_log_file(home, name)}:\n{_tail(home, name)}")
        time.sleep(0.25)
    raise StackError(f"{name} not healthy at {url} after {timeout:.0f} s; log {_log_file(home, name)}:\n{_tail(home, name)}")


def health_urls(info: StackInfo) -> dict[str, str]:
    return {"moto": f"{info.s3_url}/", "mlflow": f"{info.mlflow_url}/health", "prefect-server": f"{info.prefect_api_url}/health",
            **({"gateway": f"{info.gateway_url}/healthz"} if info.gateway_url else {})}


def health(home: Path) -> dict[str, dict]:
    """Each service: is its recorded process alive, and does its health endpoint answer."""
    info = load_info(home)
    urls = health_urls(info) if info else {}
    out = {}
    for name in SERVICES:
        record = read_pid(home, name)
        alive = bool(record) and _same_process(record) is not None
        url = urls.get(name)
        out[name] = {"pid": record.get("pid") if record else None, "alive": alive, "url": url,
                     "healthy": (http_ok(url) if url and alive else alive)}
    return out


# ---------------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------------

def _signing_key(home: Path, settings: dict[str, str]) -> dict[str, str]:
    """The worker signs releases: with TANDEM_SIGNING_KEY from the environment when set, else with a
    key pair of the stack's own (secret in stack/release-signing.env, mode 600, only in the worker's
    environment). The public key goes into stack.env for `tandem pull`."""
    if os.environ.get("TANDEM_SIGNING_KEY"):
        public = signing.public_hex(signing.load_private(os.environ["TANDEM_SIGNING_KEY"]).public_key())
        settings["TANDEM_RELEASE_PUBLIC_KEYS"] = public
        return {}
    secret = stack_dir(home) / "release-signing.env"
    if not secret.exists():
        private, _ = signing.generate()
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"TANDEM_SIGNING_KEY={private}\n")
    private = secret.read_text().strip().split("=", 1)[1]
    settings["TANDEM_RELEASE_PUBLIC_KEYS"] = signing.public_hex(signing.load_private(private).public_key())
    return {"TANDEM_SIGNING_KEY": private}


def stack_settings(info: StackInfo) -> dict[str, str]:
    """What a shell (and the worker) needs to use the stack. No secrets: moto's dummy credentials only."""
    return {
        "TANDEM_HOME": info.home,
        "TANDEM_STORE": f"s3://{info.bucket}/store",
        "TANDEM_S3_ENDPOINT_URL": info.s3_url,
        "MLFLOW_TRACKING_URI": info.mlflow_url,
        "MLFLOW_S3_ENDPOINT_URL": info.s3_url,
        "PREFECT_API_URL": info.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TANDEM_GATEWAY_URL": info.gateway_url,
        **MOTO_CREDENTIALS,
    }


def write_env_file(home: Path, settings: dict[str, str]) -> Path:
    path = env_file(home)
    lines = ["# Written by `tandem stack up`; use with:  . " + str(path),
             "# (moto's dummy AWS credentials; nothing here is a secret)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_env_file(home: Path) -> dict[str, str]:
    out = {}
    for line in env_file(home).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.removeprefix("export ").partition("=")
            out[k] = shlex.split(v)[0] if v else ""
    return out


def load_info(home: Path) -> StackInfo | None:
    try:
        return StackInfo(**json.loads((stack_dir(home) / "stack.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _save_info(home: Path, info: StackInfo) -> None:
    (stack_dir(home) / "stack.json").write_text(json.dumps(asdict(info), indent=2))


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    # a stack of its own: never point at (or be configured by) another Prefect server or tracking store
    for k in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI", "TANDEM_STORE",
              "TANDEM_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _bin(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", name]


# ---------------------------------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------------------------------

def up(home: Path, ports: Ports | None = None, *, deploy: bool = True, worker: bool = True,
       log: Callable[[str], None] = print, timeout: float = 90.0) -> tuple[StackInfo, bool]:
    """Start the stack (or report it is already up). Returns (info, started_now)."""
    home = Path(home).resolve()
    sdir = stack_dir(home)
    sdir.mkdir(parents=True, exist_ok=True)
    running = {n: is_running(home, n) for n in SERVICES}
    info = load_info(home)
    if info and all(running[n] for n in SERVICES if read_pid(home, n)) and any(running.values()):
        return info, False
    if any(running.values()):
        log("a previous stack is partly running: stopping what is left of it first")
        down(home, log=log)

    ports = ports or Ports()
    taken: set[int] = set()
    chosen = {}
    for key in ("s3", "mlflow", "prefect", "gateway"):  # info.ports keeps the first three; the gateway's is in its URL
        wanted = getattr(ports, key)
        if wanted is not None:
            if not _port_free(wanted):
                raise StackError(f"port {wanted} ({key}) is already in use on {HOST}")
            chosen[key] = wanted
        else:
            chosen[key] = free_port(taken | set(p for p in asdict(ports).values() if p))
        taken.add(chosen[key])
    info = StackInfo(
        home=str(home), ports={k: chosen[k] for k in ("s3", "mlflow", "prefect")}, bucket=BUCKET,
        s3_url=f"http://{HOST}:{chosen['s3']}", mlflow_url=f"http://{HOST}:{chosen['mlflow']}",
        prefect_url=f"http://{HOST}:{chosen['prefect']}", prefect_api_url=f"http://{HOST}:{chosen['prefect']}/api",
        gateway_url=f"http://{HOST}:{chosen['gateway']}",
    )
    settings = stack_settings(info)
    base = _base_env()
    prefect_home = sdir / "prefect"
    prefect_env = {**base, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    t_start = time.monotonic()
    # moto keeps S3 in memory: a fresh stack has an empty bucket, so MLflow (whose artifacts live there)
    # starts from an empty database too, rather than pointing at artifacts that no longer exist.
    (sdir / "mlflow.db").unlink(missing_ok=True)
    try:
        # 1. S3
        _spawn(home, "moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(chosen["s3"])], base, cwd=sdir)
        # 2. Prefect server (slowest: database migrations), started early so it warms up meanwhile
        _spawn(home, "prefect-server", _bin("prefect") + ["server", "start", "--host", HOST, "--port", str(chosen["prefect"])],
               prefect_env, cwd=sdir)
        log(f"moto healthy in {_wait_healthy(home, 'moto', f'{info.s3_url}/', timeout):.1f} s")
        _create_bucket(info)
        # 2b. the device gateway, on the stack's S3 store (phones upload here; `tandem share --via`)
        _spawn(home, "gateway", [sys.executable, "-m", "tandem.gateway", "--host", HOST, "--port", str(chosen["gateway"])],
               {**base, **settings}, cwd=sdir)
        # 3. MLflow
        mlflow_env = {**base, **MOTO_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": info.s3_url,
                      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        _spawn(home, "mlflow", _bin("mlflow") + [
            "server", "--backend-store-uri", f"sqlite:///{sdir / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{info.bucket}/mlartifacts",
            "--host", HOST, "--port", str(chosen["mlflow"]), "--workers", "1"], mlflow_env, cwd=sdir)
        log(f"prefect server healthy in {_wait_healthy(home, 'prefect-server', f'{info.prefect_api_url}/health', timeout):.1f} s")
        log(f"mlflow healthy in {_wait_healthy(home, 'mlflow', f'{info.mlflow_url}/health', timeout):.1f} s")
        log(f"gateway healthy in {_wait_healthy(home, 'gateway', f'{info.gateway_url}/healthz', timeout):.1f} s")
        _save_info(home, info)
        signing_env = _signing_key(home, settings)
        write_env_file(home, settings)
        # 4. work pool, queues, deployments, worker
        # The deploy runs without TANDEM_REPO, so the pull step keeps "{{ $TANDEM_REPO }}" and the worker
        # resolves it when a run starts; the worker gets it (and PYTHONPATH) along with the stack settings.
        client_env = {**prefect_env, **settings}
        client_env.pop("TANDEM_REPO", None)
        _ensure_work_pool(info)
        if deploy:
            info.deployments, info.deploy_errors = _deploy(home, client_env, log)
            info.deploy_errors += _untyped_deployments(info, log)
            _save_info(home, info)
        if worker:
            _spawn(home, "prefect-worker", _bin("prefect") + ["worker", "start", "--pool", WORK_POOL, "--type", "process",
                                                              "--name", f"tandem-local-{chosen['prefect']}"],
                   {**client_env, **signing_env, "TANDEM_REPO": str(REPO)}, cwd=sdir)
            _wait_worker(home, info, timeout=30)
    except BaseException:
        down(home, log=lambda s: None)
        raise
    log(f"stack up in {time.monotonic() - t_start:.1f} s")
    return info, True


def _create_bucket(info: StackInfo) -> None:
    s3 = boto3.client("s3", endpoint_url=info.s3_url, aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                      region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"])
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if info.bucket not in existing:
        s3.create_bucket(Bucket=info.bucket)


def _api(info: StackInfo, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    req = urllib.request.Request(f"{info.prefect_api_url}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _ensure_work_pool(info: StackInfo) -> None:
    """The process work pool (with the process worker's default job template) and its limited queues."""
    status, _ = _api(info, "GET", f"/work_pools/{WORK_POOL}")
    if status == 404:
        status, body = _api(info, "POST", "/work_pools/", {
            "name": WORK_POOL, "type": "process", "description": "Tandem flows as local processes",
            "base_job_template": ProcessWorker.get_default_base_job_template()})
        if status not in (200, 201, 409):
            raise StackError(f"could not create work pool {WORK_POOL}: {status} {body}")
    for queue, limit in WORK_QUEUES.items():
        status, _ = _api(info, "GET", f"/work_pools/{WORK_POOL}/queues/{queue}")
        if status == 404:
            status, body = _api(info, "POST", f"/work_pools/{WORK_POOL}/queues", {"name": queue, "concurrency_limit": limit})
        else:
            status, body = _api(info, "PATCH", f"/work_pools/{WORK_POOL}/queues/{queue}", {"concurrency_limit": limit})
        if status not in (200, 201, 204):
            raise StackError(f"could not set up work queue {queue}: {status} {body}")


def deployment_names(prefect_file: Path = PREFECT_FILE) -> list[str]:
    return [d["name"] for d in (yaml.safe_load(prefect_file.read_text()).get("deployments") or [])]


def _deploy(home: Path, env: dict, log: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """`prefect --no-prompt deploy --all`; if that fails (a flow that does not import yet), each
    deployment on its own so the others are still registered. Returns (deployed, errors)."""
    cmd = _bin("prefect") + ["--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE)]
    t0 = time.monotonic()
    check = _start_entrypoint_check(env)  # in parallel: `prefect deploy` is silent about flows that do not import
    r = _run_logged(home, "deploy", cmd + ["--all"], env)
    if r.returncode == 0:
        log(f"deployed {len(deployment_names())} deployments in {time.monotonic() - t0:.1f} s")
        return deployment_names(), _entrypoint_problems(check, log)
    deployed, errors = [], []
    for name in deployment_names():
        r = _run_logged(home, "deploy", cmd + ["--name", name], env)
        if r.returncode == 0:
            deployed.append(name)
        else:
            last = [ln for ln in r.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
            errors.append(f"{name}: {last[0].strip()}")
            log(f"[yellow]could not deploy {name}[/]: {last[0].strip()} (see {_log_file(home, 'deploy')})")
    log(f"deployed {len(deployed)} of {len(deployed) + len(errors)} deployments in {time.monotonic() - t0:.1f} s")
    return deployed, errors + _entrypoint_problems(check, log, skip={e.split(":")[0] for e in errors})


_CHECK = r"""
import importlib, json, sys, yaml
out = {}
for d in yaml.safe_load(open(sys.argv[1]))["deployments"]:
    module = d["entrypoint"].split(":")[0].removesuffix(".py").replace("/", ".")
    try:
        importlib.import_module(module)
    except BaseException as e:
        out[d["name"]] = f"{d['entrypoint']} does not import ({type(e).__name__}: {e})"
print(json.dumps(out))
"""


def _start_entrypoint_check(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHECK, str(PREFECT_FILE)], env=env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _entrypoint_problems(check: subprocess.Popen, log: Callable[[str], None], skip: set = frozenset()) -> list[str]:
    try:
        problems = json.loads(check.communicate(timeout=120)[0] or "{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        check.kill()
        return []
    out = []
    for name, problem in problems.items():
        if name not in skip:
            out.append(f"{name}: {problem}; its runs will fail until it does (then: tandem stack deploy)")
            log(f"[yellow]warning[/] deployment {name}: {problem}; its runs will fail until it does "
                "(then run `tandem stack deploy`)")
    return out


def _untyped_deployments(info: StackInfo, log: Callable[[str], None]) -> list[str]:
    """`prefect deploy` falls back to reading a flow's source when the flow does not import; its
    parameters then have no types (the UI shows no form) and its runs will fail. Say so."""
    status, body = _api(info, "POST", "/deployments/filter", {})
    problems = []
    for d in body if status == 200 else []:
        props = (d.get("parameter_openapi_schema") or {}).get("properties") or {}
        untyped = [k for k, v in props.items() if not set(v) - {"default", "position", "title", "description"}]
        if untyped:
            problems.append(f"{d['name']}: parameters {', '.join(untyped)} have no type (does its flow import?)")
            log(f"[yellow]warning[/] deployment {d['name']}: parameter(s) {', '.join(untyped)} have no type: its flow "
                f"did not import at deploy time (`python -c 'import {d['entrypoint'].split(':')[0][:-3].replace('/', '.')}'`), "
                "so its runs will fail; run `tandem stack down && tandem stack up` once it imports")
    return problems


def _run_logged(home: Path, name: str, cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env={**env, "COLUMNS": "200"}, cwd=str(REPO), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, timeout=300)
    with open(_log_file(home, name), "a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)} -> {r.returncode}\n{r.stdout}")
    return r


def _wait_worker(home: Path, info: StackInfo, timeout: float) -> float:
    """Until the worker has registered with the pool (it then polls for scheduled runs)."""
    t0 = time.monotonic()
    record = read_pid(home, "prefect-worker")
    while time.monotonic() - t0 < timeout:
        status, body = _api(info, "POST", f"/work_pools/{WORK_POOL}/workers/filter", {})
        if status == 200 and body:
            return time.monotonic() - t0
        if _same_process(record) is None:
            raise StackError(f"prefect worker exited; log {_log_file(home, 'prefect-worker')}:\n{_tail(home, 'prefect-worker')}")
        time.sleep(0.5)
    raise StackError(f"prefect worker did not register within {timeout:.0f} s:\n{_tail(home, 'prefect-worker')}")


def down(home: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Stop exactly the processes `up` started (checked against their pid files), newest first."""
    home = Path(home).resolve()
    results = []
    for name in reversed(SERVICES):
        result = stop_process(home, name)
        results.append(result)
        if result["action"] != "not started":
            log(f"{name}: {result['action']}" + (f" (pid {result['pid']})" if result.get("pid") else ""))
    return results


def started_pids(home: Path) -> dict[str, list[int]]:
    """Each running service's process and its descendants (what `down` will stop)."""
    out = {}
    for name in SERVICES:
        record = read_pid(home, name)
        proc = _same_process(record) if record else None
        if proc:
            try:
                out[name] = [proc.pid] + [c.pid for c in proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                out[name] = [proc.pid]
    return out


def redeploy(home: Path, log: Callable[[str], None] = print) -> StackInfo:
    """Register the deployments again against the running stack (after a flow or prefect.yaml changed)."""
    home = Path(home).resolve()
    info = load_info(home)
    if info is None or not is_running(home, "prefect-server"):
        raise StackError("the stack is not up: run `tandem stack up`")
    env = {**_base_env(), "PREFECT_HOME": str(stack_dir(home) / "prefect"), **stack_settings(info)}
    _ensure_work_pool(info)
    info.deployments, info.deploy_errors = _deploy(home, env, log)
    info.deploy_errors += _untyped_deployments(info, log)
    _save_info(home, info)
    return info
