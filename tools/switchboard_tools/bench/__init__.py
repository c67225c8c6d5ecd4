"""Benchmarks of each service, one module per service: `python -m switchboard_tools.bench.<service>`."""
