from tandem.cli.main import app

app()
