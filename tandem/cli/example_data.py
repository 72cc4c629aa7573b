"""The example data `tandem init` writes beside a template's task.yaml: small, seeded, learnable."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tandem import task as tasks

# ---- example data: each target a fixed function of the inputs plus a per-user offset, which the
# server model cannot know and the on-device update learns. Ten users: every fifth never shares and
# the server holds out about a fifth of the rest by a keyed hash, so fewer can leave one user to train on.

def _motions(task: tasks.Task, rng: np.random.Generator, users: int = 10, sessions: int = 2,
             samples: int = 200) -> pd.DataFrame:
    """A phone's accelerometer: per label, gravity plus an oscillation (none, slow and small, fast and
    large); each user holds the phone their own way (gravity's direction) and moves with their own vigor."""
    rate, source = task.inputs.sample_rate_hz, task.data.source
    channels = [c.name for c in task.inputs.channels]
    profiles = [(0.0, 0.0), (0.8, 0.3), (4.0, 1.0)]  # (Hz, g) per label, in the labels' order
    frames = []
    for u in range(users):
        down = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.3, 3)
        down /= np.linalg.norm(down)
        vigor, tempo = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.2)
        for s in range(sessions):
            start = pd.Timestamp("2024-05-01T08:00:00Z") + pd.Timedelta(days=u, hours=6 * s)
            offset = 0
            for c in rng.permutation(len(task.target.labels)):  # one run per label, in a random order
                hz, g = profiles[c]
                t = (offset + np.arange(samples)) / rate
                axis = rng.normal(0, 1, 3)
                wave = g * vigor * np.sin(2 * np.pi * hz * tempo * t + rng.uniform(0, 2 * np.pi))
                x = down + wave[:, None] * (axis / np.linalg.norm(axis)) + rng.normal(0, 0.02 + 0.05 * g, (samples, 3))
                frame = pd.DataFrame(x.round(4), columns=channels)
                frame.insert(0, source.target, task.target.labels[c])
                stamps = (start + pd.to_timedelta(t, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f")
                frame.insert(0, source.time, stamps.str[:-3] + "Z")  # milliseconds, UTC
                frame.insert(0, source.session, f"s{s + 1}")
                frame.insert(0, source.user, f"u{u + 1:02d}")
                frames.append(frame)
                offset += samples
    return pd.concat(frames, ignore_index=True)


def _workouts(task: tasks.Task, rng: np.random.Generator, spread: float, noise: float, users: int = 10,
              rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Workouts (duration, distance, climb) and how hard each felt: a fixed function of them plus how
    this user rates (a personal offset within +-spread: none so far out that the server's model
    fails them before any update) plus noise."""
    frames, scores, source = [], [], task.data.source
    offsets = rng.permutation(np.linspace(-spread, spread, users))
    for u in range(users):
        pace = rng.uniform(5, 11)  # km/h: this user's usual speed
        duration = rng.uniform(15, 150, rows)
        distance = duration / 60 * pace * rng.uniform(0.8, 1.2, rows)
        climb = np.minimum(rng.lognormal(4.5, 1.0, rows), 3000)
        days = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.choice(365, rows, replace=False)), unit="D")
        frames.append(pd.DataFrame({source.user: f"u{u + 1:02d}", source.time: days.strftime("%Y-%m-%d"),
                                    "duration_min": duration.round(1), "distance_km": distance.round(2),
                                    "climb_m": climb.round(0)}))
        effort = 0.5 + duration / 60 + distance / 10 + np.log1p(climb) / 4  # the same for everyone
        scores.append(effort + offsets[u] + rng.normal(0, noise, rows))
    return pd.concat(frames, ignore_index=True), np.concatenate(scores)


def _workout_classes(task: tasks.Task, rng: np.random.Generator) -> pd.DataFrame:
    frame, score = _workouts(task, rng, spread=0.3, noise=0.1)
    cuts = np.quantile(score, np.arange(1, len(task.target.labels)) / len(task.target.labels))  # balanced classes
    return frame.assign(**{task.data.source.target: np.asarray(task.target.labels)[np.searchsorted(cuts, score)]})


def _workout_effort(task: tasks.Task, rng: np.random.Generator) -> pd.DataFrame:
    frame, score = _workouts(task, rng, spread=0.5, noise=0.3)
    return frame.assign(**{task.data.source.target: np.clip(score, task.target.min, task.target.max).round(2)})


GENERATORS = {"sensor-classification": _motions, "tabular-classification": _workout_classes,
              "tabular-regression": _workout_effort}


def example(template: str, task: tasks.Task, seed: int) -> pd.DataFrame:
    """The template's example table, the same on every machine for one seed."""
    return GENERATORS[template](task, np.random.default_rng(seed))
