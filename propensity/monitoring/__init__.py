"""Monitoring: the numbers the closed loop acts on. Reference profiles and drift, realised and expected model
performance, always-valid sequential tests (canary, KPIs), the decision log and outcomes, KPIs and the dashboard.
Pure core: no Dagster here; the assets and sensors that run these live in `propensity_assets/` and `sensors/`."""
