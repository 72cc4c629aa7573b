"""The door: uploads per second through the device gateway against direct writes to the store, same run.

The batches are the demo fleet's day (`make demo`: HAPT, every 5th user never shares, half of each other
user's windows, 64 per batch). A bounded load generator (a fixed number of client threads, each one app
install with its own key, each sending its share of a fixed list of batches one request at a time) drives
one gateway replica: `python -m tandem.gateway`, its own process, on 127.0.0.1 with a local store. The
direct side runs the same threads writing the same batches into another local store the way the
simulator does (parquet bytes, create-only put). Both sides do the device's work too (parquet, or JSON +
gzip + a P-256 signature). Targets: the gateway at least half the direct rate; one replica takes the
demo fleet's day in under a minute.

Writes bench/results.json["gateway"] (other keys are kept) and prints the numbers.
Usage: python bench/bench_gateway.py [--clients N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TANDEM_PSEUDONYM_KEY", "bench-only-pseudonym-key")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tandem import task as tasks  # noqa: E402
from tandem.data.landing import upload_key  # noqa: E402
from tandem.data.store import LocalStore  # noqa: E402
from tandem.fleet import users as fleet  # noqa: E402
from tandem.fleet.gateway_client import Device  # noqa: E402
from tandem.fleet.sharing import batch_table, shared_rows, table_bytes  # noqa: E402
from tandem.gateway.landing import batch_id  # noqa: E402
from tandem.gateway.server import free_port  # noqa: E402
from tandem.privacy.policy import load_policy  # noqa: E402
from results_file import record  # noqa: E402  (bench/, this script's folder)

ROOT = Path(__file__).resolve().parents[1]


def demo_day_batches() -> list:
    """The tables `tandem share` uploads for the demo (HAPT, fraction 0.5, every 5th held out, 64 per batch)."""
    everyone = fleet.load_fleet(tasks.resolve("har"), "task")  # the demo's task (a gateway serves har by default)
    sharers, _ = fleet.split_users(everyone, 5)
    policy, key = load_policy("pseudonymized"), os.environ["TANDEM_PSEUDONYM_KEY"].encode()
    tables = []
    for user in sharers:
        rows = shared_rows(user, 0.5, policy, key)
        tables += [batch_table(user, rows[s:s + 64], key, "k1", policy) for s in range(0, len(rows), 64)]
    return tables


def drive(clients: int, tables: list, send) -> tuple[float, list[float]]:
    """(seconds, per-request latencies) for `clients` threads sending `tables` between them."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        mine = []
        for table in tables[i::clients]:
            t = time.perf_counter()
            send(i, table)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies


def summary(seconds: float, latencies: list[float]) -> dict:
    ms = np.array(latencies) * 1000
    return {"uploads": len(latencies), "seconds": round(seconds, 2), "uploads_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def start_gateway(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TANDEM_HOME": str(home), "TANDEM_GATEWAY_MAX_INSTALL_BATCHES_PER_DAY": "100000",
           "TANDEM_MAX_PSEUDONYM_BATCHES_PER_DAY": "100000", "PYTHONPATH": str(ROOT)}
    env.pop("TANDEM_STORE", None)
    proc = subprocess.Popen([sys.executable, "-m", "tandem.gateway", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("the gateway did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (the bound on load)")
    parser.add_argument("--rounds", type=int, default=2, help="send the day's batches this many times (fresh stores)")
    args = parser.parse_args()
    load_start = os.getloadavg()
    tables = demo_day_batches()
    rows = sum(t.num_rows for t in tables)
    print(f"demo fleet's day: {len(tables)} batches, {rows} rows; {args.clients} clients")
    direct_runs, gateway_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        for r in range(args.rounds):
            store = LocalStore(Path(tmp) / f"direct-{r}")

            def direct(i, table, store=store):
                pseudonym = table.column("pseudonym")[0].as_py()
                store.put(upload_key(pseudonym[:16], batch_id(table), ".parquet"), table_bytes(table), if_absent=True)
            direct_runs.append(summary(*drive(args.clients, tables, direct)))

            proc, url = start_gateway(Path(tmp) / f"gateway-{r}")
            try:
                devices = [Device(url, ec.generate_private_key(ec.SECP256R1())) for _ in range(args.clients)]
                for d in devices:
                    d.enroll()

                def through(i, table):
                    answer = devices[i].upload(table, batch_id(table))
                    assert answer["status"] == "landed", answer
                gateway_runs.append(summary(*drive(args.clients, tables, through)))
                landed = len(LocalStore(Path(tmp) / f"gateway-{r}" / "store").list("incoming/"))
                assert landed == len(tables), (landed, len(tables))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(f"round {r}: direct {direct_runs[-1]}  gateway {gateway_runs[-1]}")
    best_direct = max(direct_runs, key=lambda s: s["uploads_per_s"])
    best_gateway = max(gateway_runs, key=lambda s: s["uploads_per_s"])
    result = {
        "task": "har", "batches_per_day": len(tables), "rows_per_day": rows, "clients": args.clients,
        "direct": best_direct, "gateway": best_gateway, "rounds": {"direct": direct_runs, "gateway": gateway_runs},
        "gateway_over_direct": round(best_gateway["uploads_per_s"] / best_direct["uploads_per_s"], 3),
        "target_gateway_over_direct": 0.5,
        "demo_day_seconds_one_replica": best_gateway["seconds"], "target_demo_day_seconds": 60,
    }
    record("gateway", result, load_start)
    for key in ("batches_per_day", "rows_per_day", "direct", "gateway", "gateway_over_direct",
                "demo_day_seconds_one_replica", "load_avg_at_start", "load_avg_at_end"):
        print(f"{key:30} {result[key]}")


if __name__ == "__main__":
    main()
