"""`tandem stack up|down|status|deploy`: the local stack (S3 on moto, the device gateway, MLflow server, Prefect server,
deployments and a worker) on 127.0.0.1, everything under $TANDEM_HOME/stack/."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tandem.ops import stack
from tandem.settings import Settings

app = typer.Typer(help="A local production-like stack: S3 (moto), MLflow server, Prefect server + worker.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _print_addresses(info) -> None:
    home = Settings().home
    table = Table(title="Tandem stack (127.0.0.1 only)", show_header=True)
    table.add_column("service")
    table.add_column("address")
    table.add_row("Prefect UI", info.prefect_url)
    table.add_row("MLflow UI", info.mlflow_url)
    table.add_row("S3 (moto)", f"{info.s3_url}  bucket [bold]{info.bucket}[/], store s3://{info.bucket}/store")
    if getattr(info, "gateway_url", ""):
        table.add_row("device gateway", f"{info.gateway_url}  (tandem share --via {info.gateway_url})")
    console.print(table)
    if info.deployments:
        console.print("deployments: " + ", ".join(info.deployments) + f"  (work pool [bold]{stack.WORK_POOL}[/])")
    for err in info.deploy_errors:
        console.print(f"[yellow]not ready:[/] {err}")
    console.print(f"logs and pids: {stack.stack_dir(home)}")
    console.print(f"use it from a shell:  [bold]. {stack.env_file(home)}[/]")


@app.command()
def up(
    s3_port: Optional[int] = typer.Option(None, help="port for the S3 endpoint (default: a free port)"),
    mlflow_port: Optional[int] = typer.Option(None, help="port for the MLflow server (default: a free port)"),
    prefect_port: Optional[int] = typer.Option(None, help="port for the Prefect server (default: a free port)"),
    gateway_port: Optional[int] = typer.Option(None, help="port for the device gateway (default: a free port)"),
    deploy: bool = typer.Option(True, help="register deployments/prefect.yaml"),
    worker: bool = typer.Option(True, help="start a worker for the process work pool"),
):
    """Start S3 (moto) + bucket, the device gateway, MLflow server, Prefect server, work pool, deployments and a worker;
    write $TANDEM_HOME/stack.env. Says so when the stack is already up."""
    home = Settings().home
    try:
        info, started = stack.up(home, stack.Ports(s3_port, mlflow_port, prefect_port, gateway_port), deploy=deploy, worker=worker,
                                 log=console.print)
    except stack.StackError as e:
        console.print(f"[red]stack up failed:[/] {e}")
        raise typer.Exit(1)
    if not started:
        console.print("[green]the stack is already up[/]")
    _print_addresses(info)


@app.command()
def down():
    """Stop exactly the processes `tandem stack up` started (checked against their pid files)."""
    results = stack.down(Settings().home, log=console.print)
    if all(r["action"] == "not started" for r in results):
        console.print("the stack is not running")
    if any(r["action"] == "still alive" for r in results):
        raise typer.Exit(1)


@app.command()
def status():
    """Each service's pid, liveness and health endpoint."""
    home = Settings().home
    report = stack.health(home)
    table = Table(title=f"Tandem stack in {stack.stack_dir(home)}")
    for col in ("service", "pid", "alive", "healthy", "health check"):
        table.add_column(col)
    for name, s in report.items():
        table.add_row(name, str(s["pid"] or "-"), "yes" if s["alive"] else "no",
                      "[green]yes[/]" if s["healthy"] else "[red]no[/]", s["url"] or "")
    console.print(table)
    info = stack.load_info(home)
    if info and any(s["alive"] for s in report.values()):
        _print_addresses(info)
    if not all(s["healthy"] for s in report.values()):
        raise typer.Exit(1)


@app.command("deploy")
def deploy_cmd():
    """Register deployments/prefect.yaml again on the running stack (after flows changed)."""
    try:
        info = stack.redeploy(Settings().home, log=console.print)
    except stack.StackError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1)
    _print_addresses(info)
