"""`switchboard bench`: placeholder until the pipeline benchmark lands."""

from __future__ import annotations


def bench(seconds: float) -> int:
    """Run the benchmark; the exit status."""
    raise NotImplementedError(seconds)
