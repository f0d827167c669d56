"""`python -m interns.cli` runs the `interns` command."""

from interns.cli.main import app

app()
