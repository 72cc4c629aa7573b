"""`tandem evaluate`'s folds x seeds runs in worker processes against one process, same run.

The protocol of `tandem evaluate --folds F --seeds S` on HAPT's first N users (HAR, the task's own
training and update policy; FL rivals at fewer rounds to keep the bench short). Baseline: every
(fold, seed) run in this process, torch on its default threads (how `tandem evaluate` ran before
`--workers`). Then the same runs in `--workers` spawned processes (default: one per core), torch on
one thread in each. Checks the two give the same runs (fold, seed and users) before timing counts.

Writes bench/results.json["evaluate_workers"] (other keys are kept) and prints the numbers.
Usage: python bench/bench_evaluate.py [--users N] [--folds F] [--seeds S] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tandem import task as tasks
from tandem.evaluation.protocol import ProtocolConfig, run_protocol, worker_count
from tandem.evaluation.tuning import train_for_fold
from tandem.fleet.users import task_fleet
from tandem.release.params import DeviceUpdateConfig
from tandem.training.device_update import policy_for
from results_file import record  # bench/, this script's folder


def timed(workers: int, task, users, cfg) -> tuple[float, list[dict]]:
    t = time.perf_counter()
    runs = run_protocol(task, users, cfg, train_for_fold(task, cfg.folds), DeviceUpdateConfig.for_task(task),
                        log=lambda line: print(f"  [{workers} worker(s)] {line}", flush=True), workers=workers)
    return time.perf_counter() - t, runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=12, help="HAPT's first N users")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    load_start = os.getloadavg()
    har = tasks.resolve("har")
    users = task_fleet(har, users=list(range(1, args.users + 1)))
    cfg = ProtocolConfig(policy=policy_for(har), folds=args.folds, seeds=args.seeds, fl_rounds=5, budgets=("u20", "pc5"))
    workers = worker_count(args.workers, args.folds * args.seeds)
    serial_s, serial = timed(1, har, users, cfg)
    parallel_s, parallel = timed(workers, har, users, cfg)
    assert [(r["fold"], r["seed"], r["users"]) for r in parallel] == [(r["fold"], r["seed"], r["users"]) for r in serial]
    result = {
        "task": "har", "users": args.users, "folds": args.folds, "seeds": args.seeds, "fl_rounds": cfg.fl_rounds,
        "cores": os.cpu_count(), "workers": workers, "torch_threads_one_process": torch.get_num_threads(),
        "one_process_seconds": round(serial_s, 1), "workers_seconds": round(parallel_s, 1),
        "speedup": round(serial_s / parallel_s, 2),
    }
    record("evaluate_workers", result, load_start)
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
