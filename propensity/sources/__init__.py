"""Source adapters: each maps one real format onto event contract v1 (unvalidated; `validate_events` is the gate).

Every adapter returns a `SourceBatch`. Only the simulator knows the truth, so only it fills `truth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class SourceBatch:
    events: pd.DataFrame  # contract-shaped columns, values not yet validated
    truth: pd.DataFrame | None = None  # simulator only: event_id, true_propensity
    # simulator only: per session its hidden traits (intent, hour, checkout factor, focus category, user index),
    # which `propensity.sources.interventions` needs to continue a session under an offer
    sessions: pd.DataFrame | None = None


SOURCES = ("simulator", "taobao", "diginetica", "contract_files")


def load_source(name: str, **options) -> SourceBatch:
    """Run the named adapter with its options (see each adapter's loader for what it takes)."""
    loaders: dict[str, Callable[..., SourceBatch]] = {}
    if name == "simulator":
        from propensity.sources.simulator import simulate_traffic

        loaders[name] = simulate_traffic
    elif name == "taobao":
        from propensity.sources.taobao import load_taobao

        loaders[name] = load_taobao
    elif name == "diginetica":
        from propensity.sources.diginetica import load_diginetica

        loaders[name] = load_diginetica
    elif name == "contract_files":
        from propensity.sources.contract_files import load_contract_files

        loaders[name] = load_contract_files
    else:
        raise ValueError(f"unknown source {name!r}: choose one of {SOURCES}")
    return loaders[name](**options)
