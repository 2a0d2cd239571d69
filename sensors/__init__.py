"""Drift, freshness, KPI and canary sensors (they arrive with the models, serving and streaming issues)."""
