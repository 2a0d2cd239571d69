"""Where one endpoint of the local runtime keeps its state, and its production variants.

`$PROPENSITY_HOME/serving/endpoints/<name>/`:
- `state.json`: the production variants (name, model version from the registry, traffic weight), replaced atomically
  by the deployer (`serving.control`) and re-read by the endpoint's server (`serving.router`) when it changes;
- `history.jsonl`: every deployment, promotion and rollback with its reason;
- `inference.log`: one JSON line per scored row or failed request, with the variant that answered (the canary alarms
  and the monitoring sensors read it);
- `server.pid` / `server.port` / `server.out` while its server runs.
Both planes use this module; it imports nothing heavy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from propensity.paths import home, write_text_atomic


@dataclass(frozen=True)
class VariantSpec:
    """One production variant of an endpoint: which model version it serves and its traffic weight."""

    name: str
    model_version: str
    weight: float


def endpoints_root() -> Path:
    """Where every endpoint of the local runtime keeps its directory."""
    return home() / "serving" / "endpoints"


class EndpointFiles:
    """Where one endpoint's state lives, and atomic reads and writes of its variants."""

    def __init__(self, name: str, root: Path | None = None):
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"endpoint name {name!r}: use letters, digits and '-' (SageMaker's rule)")
        self.name = name
        self.dir = (Path(root) if root else endpoints_root()) / name
        self.state = self.dir / "state.json"
        self.history = self.dir / "history.jsonl"
        self.inference_log = self.dir / "inference.log"
        self.pid = self.dir / "server.pid"
        self.port = self.dir / "server.port"

    def read_variants(self) -> list[VariantSpec]:
        if not self.state.exists():
            return []
        return [VariantSpec(**v) for v in json.loads(self.state.read_text())["variants"]]

    def write_variants(self, variants: list[VariantSpec]) -> None:
        total = sum(v.weight for v in variants)
        if variants and total <= 0:
            raise ValueError("variant weights must sum to more than zero")
        if len({v.name for v in variants}) != len(variants):
            raise ValueError(f"variant names must be unique: {[v.name for v in variants]}")
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            self.state, json.dumps({"variants": [asdict(v) for v in variants], "updated_at": time.time()}, indent=2)
        )
