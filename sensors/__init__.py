"""Drift, freshness, KPI and canary sensors (the closed-loop issue). They may use resources, the core and the
control plane (docs/ARCHITECTURE.md, Layers); stream freshness is an asset check on a schedule today."""
