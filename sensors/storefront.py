"""The storefront's daily export lands in the lake: each new `<day>.jsonl` in the export directory becomes one run of
`storefront_ingest` (contract gate, quarantine, the day's `raw_events` partition). Declarative automation then
rebuilds what depends on the new partition (sessions, features, the online store)."""

from __future__ import annotations

import json
import re

import dagster as dg

from propensity.paths import storefront_export_dir

INGEST_JOB = "storefront_ingest"
EVENT_DATE_PARTITIONS = "event_date"  # propensity_assets.partitions.event_date_partitions
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")


def new_exports(seen: set[str]) -> list[tuple[str, str]]:
    """(day, path) of export files not yet ingested, oldest day first (half-written files have another name)."""
    directory = storefront_export_dir()
    if not directory.exists():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        match = _DAY_FILE.match(path.name)
        if match and path.name not in seen:
            found.append((match.group(1), str(path)))
    return found


@dg.sensor(
    job_name=INGEST_JOB,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests each new daily export of the storefront (one run per file; the cursor remembers the files).",
)
def storefront_export_sensor(context: dg.SensorEvaluationContext):
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    exports = new_exports(seen)
    if not exports:
        return dg.SkipReason(f"no new export in {storefront_export_dir()}")
    days = [day for day, _ in exports]
    requests = [
        dg.RunRequest(
            run_key=f"export-{day}-{path}",
            partition_key=day,
            run_config={"ops": {"source_events": {"config": {"source": "contract_files", "paths": [path]}}}},
            tags={"propensity/cause": f"storefront export {day}"},
        )
        for day, path in exports
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(EVENT_DATE_PARTITIONS, days)],
        cursor=json.dumps(sorted(seen | {path.rsplit("/", 1)[-1] for _, path in exports})),
    )
