"""The datasvc benchmark: ``python -m bench`` (see docs/benchmarks.md)."""
