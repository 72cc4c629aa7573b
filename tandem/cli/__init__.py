"""The `tandem` command (typer): each sub-command group in its own module. The app lives in
`tandem.cli.main`; it is not imported here, so `tandem init` and `tandem tasks` run even before
TANDEM_TASK names a task that exists (the rest of the CLI derives its schema from that task)."""
