"""Settings: read from the environment once, at an entry point (the CLI, a flow, a test), and passed
down. Embedded defaults: with nothing set, everything lives under TANDEM_HOME on this machine.
Secrets are `SecretStr`: they never print, log or serialize in the clear."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore", frozen=True)

    home: Path = Field(Path(".tandem"), description="everything local: store, MLflow, Prefect, simulated devices")
    store: str | None = Field(None, description="a local folder or s3://bucket/prefix (default: $TANDEM_HOME/store)")
    s3_endpoint_url: str | None = Field(None, description="an S3-compatible endpoint (MinIO, moto)")
    s3_timeout_seconds: float = Field(15.0, gt=0, le=600, description="how long one S3 request may wait for an answer "
                                      "(two attempts): a hanging endpoint fails the run instead of stalling it")
    mlflow_tracking_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "TANDEM_TRACKING_URI"),
                                     description="MLflow tracking URI (default: SQLite under TANDEM_HOME)")
    mlflow_artifacts: str | None = Field(None, description="artifact root for a local tracking store")
    task: str = Field("har", description="the task served: a built-in name (`tandem tasks`) or a task folder")
    model_name: str | None = Field(None, description="registered model name and release folder "
                                   "(default: tandem-<task>)")
    pseudonym_key: SecretStr | None = Field(None, description="the devices' HMAC key for pseudonyms")
    pseudonym_key_id: str = Field("k1", pattern=r"^[a-z]{1,3}[0-9]{1,6}$",  # the shape the ingest accepts
                                  description="the pseudonym key's version, recorded in every batch (e.g. k1, k2)")
    encryption_key: SecretStr | None = Field(None, description="AES-GCM key (64 hex) sealing batches")
    encryption_key_id: str = Field("e1")
    encryption_old_keys: SecretStr | None = Field(None, description="id:hex,... rotated-out keys the server may still open with")
    dask_address: str | None = Field(None, description="fan validation out over Dask: tcp://host:8786 or 'local'")
    expectations_dir: Path | None = Field(None, description="where the GX suites live (default: expectations/)")
    # releases
    signing_key: SecretStr | None = Field(None, description="Ed25519 private key (64 hex or PEM) that signs release manifests")
    signing_key_block: str | None = Field(None, description="name of a Prefect Secret block holding the signing key (when TANDEM_SIGNING_KEY is unset)")
    release_public_keys: str | None = Field(None, description="comma-separated pinned public keys (hex, PEM file paths) pull verifies with")
    min_release_version: int | None = Field(None, ge=1, description="the lowest release version `tandem pull` accepts "
                                            "(what an app build pins against rollbacks; --min-version)")
    holdout_share: float = Field(0.2, ge=0, lt=1, description="share of pseudonyms never trained on: the production flow "
                                 "scores candidates and runs the update gate on them (chosen by a keyed hash)")
    publish_lease_seconds: int = Field(120, ge=10, description="the publish lock expires this long after its last renewal")
    # limits on what one batch and one pseudonym may bring (breaches are quarantined)
    max_batch_bytes: int = Field(64 * 2**20, ge=1, description="largest batch file accepted (bytes)")
    max_row_groups: int = Field(64, ge=1, description="most parquet row groups in one batch")
    max_batch_rows: int = Field(10_000, ge=1, description="most rows in one batch")
    max_pseudonym_rows_per_day: int = Field(5_000, ge=1, description="most accepted rows per pseudonym per capture day")
    max_pseudonym_batches_per_day: int = Field(50, ge=1, description="most accepted batches per pseudonym per capture day")
    # the device gateway (tandem gateway, docs/wire-format.md): limits checked before a byte lands
    gateway_host: str = Field("127.0.0.1", description="where `tandem gateway` listens")
    gateway_port: int = Field(8787, ge=0, le=65535)
    gateway_max_body_bytes: int = Field(4 * 2**20, ge=1, description="largest request body (declared or streamed)")
    gateway_max_inflated_bytes: int = Field(32 * 2**20, ge=1, description="largest batch JSON once gunzipped")
    gateway_max_install_batches_per_day: int = Field(200, ge=1, description="most batches one app install lands per UTC day")
    gateway_max_skew_seconds: int = Field(300, ge=1, description="largest clock difference a signed request may have")
    gateway_attestation: str = Field("development", description="comma-separated attestation formats enrollment accepts "
                                     "(development, apple-appattest)")
    gateway_app_id: str | None = Field(None, description="App Attest: the app id (TEAMID.bundle.id) whose hash authData holds")
    gateway_appattest_root: Path | None = Field(None, description="App Attest: the root certificate (PEM) the x5c chain must reach")
    gateway_appattest_production: bool = Field(True, description="App Attest: require the production aaguid (false: development)")
    max_batch_decoded_bytes: int = Field(256 * 2**20, ge=1, description="most bytes a batch may decode to (the parquet "
                                         "footer's uncompressed sizes, checked before reading)")
    max_clock_skew_seconds: int = Field(600, ge=0, description="how far a batch's capture times may lie after its upload time")

    @field_validator("store")
    @classmethod
    def _store_url(cls, store: str | None) -> str | None:
        """``s3://bucket[/prefix]`` or a local folder; anything that looks like another URL is refused
        (``s3:/bucket`` or ``https://...`` would otherwise become a relative folder)."""
        if store is None:
            return None
        if store.startswith("s3://"):
            bucket = store[5:].split("/", 1)[0]
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"TANDEM_STORE {store!r}: {bucket!r} is not a valid S3 bucket name")
            return store
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", store):
            raise ValueError(f"TANDEM_STORE {store!r} is not a folder nor s3://bucket/prefix")
        return store

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, name: str | None, info) -> str:
        if name:
            return name
        task = Path(str(info.data.get("task") or "har")).name.lower()
        return "tandem-" + (re.sub(r"[^a-z0-9-]+", "-", task).strip("-") or "task")

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        return home.expanduser().resolve()

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


# The first start in a fresh PREFECT_HOME runs migrations; on a busy 2-core machine that can pass
# Prefect's 20 s default. Prefect reads it when it is imported: set before any Prefect import.
EPHEMERAL_STARTUP_TIMEOUT_SECONDS = "120"


def prefect_environment(debug: bool = False) -> None:
    """Prefect's settings the CLI relies on, in the environment before Prefect is imported (a value
    the user exported wins). Without --debug the temporary server logs only what is critical: its
    tracebacks (a full disk, a locked database) would bury the one line that says what to do."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_SECONDS)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not debug:
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def prepare_prefect_home(settings: Settings) -> None:
    """Ephemeral Prefect keeps its database under TANDEM_HOME unless told otherwise."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect makes one level only
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_SECONDS)
