from tandem.cli.errors import entry

entry()
