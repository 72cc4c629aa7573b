"""The `tandem` command (typer): each sub-command group in its own module."""

from tandem.cli.main import app

__all__ = ["app"]
