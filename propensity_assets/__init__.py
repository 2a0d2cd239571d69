"""The Dagster code location: assets, checks and jobs. `definitions.py` is the one entry point."""
