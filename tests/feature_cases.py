"""Featurizer parity cases: raw windows of a task and the features Python computes for them, for the
Swift featurizer (TandemKit's TandemFeatures) to reproduce within 1e-9.

Each task's cases are computed in this process from the task itself (`features.of(task)`: one
process featurizes several tasks one after the other). Windows are the first few of the task's
own example data when its folder holds a CSV table (`tandem init` writes one), then synthetic ones, seeded
and within the task's channel bounds: typical signals plus edge cases (zeros, constants, extreme in-range
values).

    python -m tests.feature_cases OUT_DIR   # write <task>.json for every built-in task and template
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from tandem import task as tasks
from tandem.contract import features

TEMPLATES = resources.files("tandem.task") / "templates"
SEED = 20



def builtin_names() -> list[str]:
    return [t.name for t in tasks.builtin()]


def template_names() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if (p / "task.yaml").is_file())


def write_template(template: str, folder: Path) -> Path:
    """A task folder made by `tandem init` from a template (task.yaml and its example data.csv; the
    task's name is the template's name)."""
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "init", str(folder), "--template", template,
                           "--name", template, "--force"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tandem init --template {template} failed: {done.stderr.strip()[-2000:]}")
    return folder


def _own_data_cases(task: tasks.Task, per_task: int = 3) -> list[tuple[str, np.ndarray]]:
    """The first windows of the task's own example table (a CSV in its folder), if it has one:
    the first user's first sessions (sensor) or first rows (tabular)."""
    fz = features.of(task)
    source = task.data.source
    path = Path(getattr(source, "path", "") or "")
    path = path if path.is_absolute() else task.folder / path
    if getattr(source, "kind", None) != "table" or path.suffix != ".csv" or not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    column = {name: source.columns.get(name, name) for name in fz.channels}
    first_user = [r for r in rows if r[source.user] == rows[0][source.user]]
    if task.inputs.kind == "tabular":
        return [(f"data{i}", np.array([[float(r[column[c]]) for c in fz.channels]])) for i, r in
                enumerate(first_user[:per_task])]
    out: list[tuple[str, np.ndarray]] = []
    sessions = dict.fromkeys(r[source.session] for r in first_user) if source.session else {None: None}
    for session in sessions:
        part = [r for r in first_user if session is None or r[source.session] == session]
        signals = np.array([[float(r[column[c]]) for c in fz.channels] for r in part])
        windows, _, _ = fz.cut_windows(signals, np.array([r[source.target] for r in part]))
        out += [(f"data{len(out) + i}", w) for i, w in enumerate(windows[:per_task - len(out)])]
        if len(out) >= per_task:
            break
    return out


def _sensor_cases(window: int, rate: float, bounds: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    c = len(bounds)
    t = np.arange(window)[:, None] / rate
    cases = []
    for i in range(8):  # a held phone: a steady part (gravity-like) + oscillations + noise, within bounds
        steady = rng.uniform(-0.3, 0.3, c) * bounds
        freqs = rng.uniform(0.2, rate / 2.2, (3, c))
        amps = rng.uniform(0.0, 0.15, (3, c)) * bounds
        phase = rng.uniform(0, 2 * np.pi, (3, c))
        w = steady + sum(amps[k] * np.sin(2 * np.pi * freqs[k] * t + phase[k]) for k in range(3))
        w = w + rng.normal(0, 0.02, (window, c)) * bounds * (i % 3)  # some windows without noise
        cases.append((f"motion{i}", np.clip(w, -bounds, bounds)))
    cases.append(("zeros", np.zeros((window, c))))
    cases.append(("constant", np.tile(rng.uniform(-0.9, 0.9, c) * bounds, (window, 1))))
    cases.append(("max_constant", np.tile(bounds, (window, 1))))
    cases.append(("alternating_extremes", np.where(np.arange(window)[:, None] % 2 == 0, bounds, -bounds) * np.ones((window, c))))
    cases.append(("step_min_to_max", np.where(np.arange(window)[:, None] < window // 2, -bounds, bounds) * np.ones((window, c))))
    # one extreme sample on a slow swing (a lone spike on zeros has a flat spectrum: its dominant
    # frequency is a tie that rounding decides, on either side)
    spike = 0.05 * bounds * np.sin(2 * np.pi * 0.7 * t)
    spike[window // 3] = bounds
    cases.append(("spike", spike))
    cases.append(("ramp", np.linspace(-1.0, 1.0, window)[:, None] * bounds))
    cases.append(("tiny_noise", rng.normal(0, 1e-9, (window, c))))
    return cases


def _tabular_cases(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    cases = [(f"row{i}", rng.uniform(lo, hi)[None]) for i in range(8)]
    cases += [("zeros", np.zeros((1, len(lo)))), ("min", lo[None].copy()), ("max", hi[None].copy()),
              ("min_max_mixed", np.where(np.arange(len(lo)) % 2 == 0, lo, hi)[None]),
              ("tiny", np.full((1, len(lo)), 1e-12).clip(lo, hi))]
    return cases


def cases(task: tasks.Task) -> list[tuple[str, np.ndarray]]:
    """Named raw windows (window, channels) for the task."""
    fz = features.of(task)
    own = _own_data_cases(task)
    rng = np.random.default_rng(SEED)
    if task.inputs.kind == "sensor":
        bounds = np.array([fz.channel_bounds[name] for name in fz.channels], dtype=np.float64)
        return own + _sensor_cases(fz.window, fz.sample_rate_hz, bounds, rng)
    lo = np.array([float(c.min) for c in task.inputs.columns])
    hi = np.array([float(c.max) for c in task.inputs.columns])
    return own + _tabular_cases(lo, hi, rng)


def record(task: tasks.Task) -> dict:
    """The task's spec, windows and Python features (per window, as golden vectors are made)."""
    fz = features.of(task)
    named = cases(task)
    feats = [fz.featurize_window(w) for _, w in named]
    return {
        "task": task.name,
        "spec": fz.feature_spec(),
        "cases": [name for name, _ in named],
        "windows": [w.tolist() for _, w in named],
        "features": [f.tolist() for f in feats],
        # spec version 3: the app feeds Core ML the raw features (standardization is inside the model)
        "model_inputs": [f.tolist() for f in feats],
    }


def task_record(task: str) -> dict:
    """`record()` for a task (a built-in name or a folder), in this process."""
    return record(tasks.resolve(str(task)))


def task_records(scratch: Path) -> dict[str, dict]:
    """{task name: record} for every built-in task and every `tandem init` template (folders in scratch)."""
    out = {name: task_record(name) for name in builtin_names()}
    for template in template_names():
        out[template] = task_record(str(write_template(template, scratch / template)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.feature_cases OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name, rec in task_records(Path(scratch)).items():
            (out / f"{name}.json").write_text(json.dumps(rec) + "\n")
            print(f"wrote {out / (name + '.json')}: {len(rec['windows'])} windows x {rec['spec']['n_features']} features")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
