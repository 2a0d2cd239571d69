"""Benchmarks: budgets are measured here, never by timed tests. `python -m bench` runs them all (`make bench`);
each writes var/bench/<name>.json."""
