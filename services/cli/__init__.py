"""The `interns` command."""
