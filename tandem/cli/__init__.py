"""The `tandem` command (typer): each sub-command group in its own module. The app lives in
`tandem.cli.main`; it is not imported here. A command resolves the task it serves once, from its
`Settings` (TANDEM_TASK), and passes it down: nothing reads the task when the CLI is imported, so
`tandem init` and `tandem tasks` run even before TANDEM_TASK names a task that exists."""
