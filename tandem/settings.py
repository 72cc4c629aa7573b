"""Settings: read from the environment once, at an entry point (the CLI, a flow, a test), and passed
down. Embedded defaults: with nothing set, everything lives under TANDEM_HOME on this machine.
Secrets are `SecretStr`: they never print, log or serialize in the clear."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore", frozen=True)

    home: Path = Field(Path(".tandem"), description="everything local: store, MLflow, Prefect, simulated devices")
    store: str | None = Field(None, description="a local folder or s3://bucket/prefix (default: $TANDEM_HOME/store)")
    s3_endpoint_url: str | None = Field(None, description="an S3-compatible endpoint (MinIO, moto)")
    mlflow_tracking_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "TANDEM_TRACKING_URI"),
                                     description="MLflow tracking URI (default: SQLite under TANDEM_HOME)")
    mlflow_artifacts: str | None = Field(None, description="artifact root for a local tracking store")
    model_name: str = Field("tandem-har", description="registered model name and release folder")
    pseudonym_key: SecretStr | None = Field(None, description="the devices' HMAC key for pseudonyms")
    pseudonym_key_id: str = Field("k1", description="the pseudonym key's version, recorded in every batch")
    encryption_key: SecretStr | None = Field(None, description="AES-GCM key (64 hex) sealing batches")
    encryption_key_id: str = Field("e1")
    encryption_old_keys: SecretStr | None = Field(None, description="id:hex,... rotated-out keys the server may still open with")
    dask_address: str | None = Field(None, description="fan validation out over Dask: tcp://host:8786 or 'local'")
    expectations_dir: Path | None = Field(None, description="where the GX suites live (default: expectations/)")

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @classmethod
    def from_env(cls) -> "Settings":
        return cls()

    @property
    def store_url(self) -> str:
        return self.store or str(self.home / "store")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a fresh MLflow experiment keeps artifacts when the tracking store is local."""
        return self.mlflow_artifacts or (self.home / "mlartifacts").as_uri()

    @property
    def devices_dir(self) -> Path:
        """The simulated devices' private files (the simulation's, never the production flow's)."""
        return self.home / "devices"

    def require_pseudonym_key(self) -> bytes:
        """The devices' pseudonymization key (a secret: from the environment, never code or the store)."""
        if self.pseudonym_key is None:
            raise RuntimeError(
                "TANDEM_PSEUDONYM_KEY is not set. It is a secret: export it in the environment "
                "(e.g. `export TANDEM_PSEUDONYM_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')`).")
        return self.pseudonym_key.get_secret_value().encode()


def prepare_prefect_home(settings: Settings) -> None:
    """Ephemeral Prefect keeps its database under TANDEM_HOME unless told otherwise."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect makes one level only
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start in a fresh PREFECT_HOME runs migrations; on a busy 2-core machine that can pass
    # Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
