"""`tandem gateway`: the device gateway (docs/wire-format.md) on this machine, against the configured
store (a local folder by default, S3 with TANDEM_STORE=s3://...). Stateless: run as many as you like
on one store behind a load balancer."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from tandem.settings import Settings

console = Console(stderr=True)


def gateway_command(
    host: Optional[str] = typer.Option(None, help="address to listen on (default TANDEM_GATEWAY_HOST, 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default TANDEM_GATEWAY_PORT, 8787)"),
):
    """Serve the device gateway: enrollment, signed uploads in wire format v1, presigned uploads,
    release discovery; OpenAPI at /openapi.json."""
    from tandem.data.store import store_from_settings
    from tandem.gateway import attestation
    from tandem.gateway.server import serve

    settings = Settings()
    overrides = {k: v for k, v in {"gateway_host": host, "gateway_port": port}.items() if v is not None}
    settings = settings.model_copy(update=overrides) if overrides else settings
    try:
        attestation.enabled(settings)  # a misconfigured verifier fails here in one line, not on the first enrollment
    except (RuntimeError, OSError, ValueError) as e:
        console.print(f"[red]error:[/] {str(e).splitlines()[0]}")
        raise typer.Exit(1)
    store = store_from_settings(settings)
    console.print(f"tandem gateway on http://{settings.gateway_host}:{settings.gateway_port} (store {store.url}, "
                  f"attestation {settings.gateway_attestation})")
    serve(settings, store)
