"""Publish: track the candidate in MLflow (run, metrics, artifacts, registry version) and push it to
the store as an immutable, checksummed release; then move the channel (alias and pointer together).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from tandem import __version__
from tandem.data.store import Store
from tandem.release.channels import move_channel
from tandem.release.layout import write_release
from tandem.release.signing import Signer
from tandem.release.tracker import Tracker

COREML_ARTIFACT = "coreml"


def code_version() -> str:
    """The git commit when run from a checkout, else the package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def publish_release(tracker: Tracker, store: Store, run_id: str, files: dict[str, bytes], fields: dict,
                    channel: str | None, signer: Signer) -> dict:
    """Register a version for the run's Core ML artifact, write the release signed by `signer`, then
    move `channel`. `files` must hold model.mlmodel; `fields` goes into the manifest."""
    model = tracker.model_name
    tracker.log_files(run_id, files, COREML_ARTIFACT)
    version = tracker.register_version(run_id, COREML_ARTIFACT, description=fields.get("summary", ""))
    uri = tracker.settings.tracking_uri
    manifest = write_release(store, model, version, files, {
        **fields,
        "mlflow": {"run_id": run_id, "registered_model": model, "version": version,
                   "tracking_uri": uri if uri.startswith("http") else "local"},
        "code_version": code_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, signer=signer)
    tracker.tag_version(version, {"release": f"releases/{model}/{version}/"})
    tracker.log_dict(run_id, manifest, "release/manifest.json")
    if channel:
        move_channel(tracker, store, channel, version, reason=f"run {run_id}", signer=signer)
    return manifest


def mark_blocked(tracker: Tracker, run_id: str, reasons: list[str]) -> str:
    """A candidate that failed a gate: registered and tagged, never on a channel."""
    version = tracker.register_version(run_id, COREML_ARTIFACT, description="blocked: " + "; ".join(reasons))
    tracker.tag_version(version, {"gate": "blocked", "gate_reasons": json.dumps(reasons)[:5000]})
    return version
