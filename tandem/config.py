"""Settings, read from the environment once. Embedded defaults: everything under TANDEM_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str  # a local folder path or s3://bucket/prefix
    s3_endpoint_url: str | None
    tracking_uri: str
    model_name: str

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("TANDEM_HOME", ".tandem")).resolve()
        return cls(
            home=home,
            store_url=os.environ.get("TANDEM_STORE") or str(home / "store"),
            s3_endpoint_url=os.environ.get("TANDEM_S3_ENDPOINT_URL") or None,
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            model_name=os.environ.get("TANDEM_MODEL_NAME", "tandem-har"),
        )

    @property
    def artifact_root(self) -> str:
        """Where a fresh MLflow experiment keeps artifacts when the tracking store is local."""
        return os.environ.get("TANDEM_MLFLOW_ARTIFACTS") or (self.home / "mlartifacts").as_uri()


def require_secret(name: str) -> bytes:
    """A secret from the environment (never from code, YAML or the store)."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set. It is a secret: export it in the environment "
            f"(e.g. `export {name}=$(python -c 'import secrets; print(secrets.token_hex(32))')`)."
        )
    return value.encode()


def prepare_prefect_home(settings: Settings) -> None:
    """Ephemeral Prefect keeps its database under TANDEM_HOME unless told otherwise."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect makes one level only
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start in a fresh PREFECT_HOME runs migrations; on a busy 2-core machine that can pass
    # Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
