"""Benchmarks: each is a module run as `python -m interns.bench.NAME`, writing
`bench-results/NAME.json` and printing a table."""
