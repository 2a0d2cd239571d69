"""Ingestion: a source batch lands through the contract gate, then becomes daily `raw_events` partitions.

`source_events` runs an adapter, validates every row against contract v1, quarantines failures with a reason,
and lands the valid rows by event day under an id derived from the batch's configuration, so re-running the same
batch replaces its own files instead of adding copies. `raw_events` turns each landed day into the clean daily
partition, dropping event ids that several batches delivered.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from propensity.contract import EVENT_COLUMNS, EventSchemaV1, events_to_arrow, validate_events
from propensity.sources import SOURCES, load_source
from propensity_assets.metadata import sample_rows, time_range
from propensity_assets.partitions import event_date_partitions
from resources.lake import LakeResource

LANDING = "landing"
QUARANTINE = "event_quarantine"
SIMULATOR_TRUTH = "simulator_truth"
RAW_EVENTS = "raw_events"


class SourceConfig(dg.Config):
    """Which source to ingest. The simulator takes users/days/start_date/seed; file sources take paths
    (empty: the source's own files, from `make data`)."""

    source: str = "simulator"
    users: int = 2000
    days: int = 7
    start_date: str = "2026-11-02"
    seed: int = 7
    paths: list[str] = []
    max_bad_fraction: float = 0.01  # the quarantine check fails above this share of bad rows

    def adapter_options(self) -> dict:
        if self.source not in SOURCES:
            raise dg.Failure(f"unknown source {self.source!r}: choose one of {SOURCES}")
        if self.source == "simulator":
            return {"n_users": self.users, "days": self.days, "start_date": self.start_date, "seed": self.seed}
        if self.source == "contract_files":
            if not self.paths:
                raise dg.Failure("source contract_files needs `paths`: files or directories of contract-v1 events")
            return {"paths": self.paths}
        if self.source == "taobao":
            return {"paths": self.paths} if self.paths else {}
        return {}

    def batch_id(self) -> str:
        """Same configuration, same batch id: landing is idempotent per batch."""
        options = self.adapter_options()
        digest = hashlib.sha256(json.dumps([self.source, options], sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.source}-{digest[:12]}"


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _write_events(events: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(events_to_arrow(events), path)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "source_events",
            group_name="ingestion",
            kinds={"pandas", "parquet"},
            description="Events of one source batch that passed contract v1, landed by event day.",
        ),
        dg.AssetSpec(
            QUARANTINE,
            group_name="ingestion",
            kinds={"pandas", "parquet"},
            description="Rows that failed contract v1, with the original values and a reason per row.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "bad_fraction_within_threshold",
            asset=QUARANTINE,
            description="Fails when the batch's share of quarantined rows exceeds max_bad_fraction.",
        )
    ],
)
def source_events(context: dg.AssetExecutionContext, config: SourceConfig, lake: LakeResource):
    batch_id = config.batch_id()
    batch = load_source(config.source, **config.adapter_options())
    validated = validate_events(batch.events)
    valid = validated.valid

    # A batch landed again replaces its earlier landing, whichever days that covered.
    lake.remove_matching(LANDING, f"event_date=*/{batch_id}.parquet")
    days = []
    for day_start, rows in valid.groupby(valid["event_time"].dt.floor("D"), sort=True):
        day = day_start.strftime("%Y-%m-%d")  # format the few days, not every event
        days.append(day)
        with lake.writing_file(LANDING, f"event_date={day}", f"{batch_id}.parquet") as path:
            _write_events(rows, path)
    context.instance.add_dynamic_partitions(event_date_partitions.name, days)

    with lake.writing_file(QUARANTINE, f"{batch_id}.parquet") as path:
        _write_parquet(validated.quarantine, path)
    if batch.truth is not None:
        with lake.writing_file(SIMULATOR_TRUTH, f"{batch_id}.parquet") as path:
            _write_parquet(batch.truth, path)

    reasons = validated.quarantine["reason"].str.split("; ").explode().str.split(" \\(").str[0].value_counts()
    yield dg.MaterializeResult(
        asset_key="source_events",
        metadata={
            "dagster/row_count": len(valid),
            "batch_id": batch_id,
            "source": config.source,
            "rows_in": validated.rows_in,
            "duplicates_dropped": validated.duplicates_dropped,
            "event_days": len(days),
            **time_range(valid["event_time"].min(), valid["event_time"].max()),
            "sample_rows": sample_rows(valid),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE,
        metadata={
            "dagster/row_count": len(validated.quarantine),
            "batch_id": batch_id,
            "bad_fraction": validated.bad_fraction,
            "reasons": dg.MetadataValue.json(reasons.to_dict()),
            "sample_rows": sample_rows(validated.quarantine),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=QUARANTINE,
        check_name="bad_fraction_within_threshold",
        passed=validated.bad_fraction <= config.max_bad_fraction,
        metadata={"bad_fraction": validated.bad_fraction, "max_bad_fraction": config.max_bad_fraction},
        description=f"{len(validated.quarantine)} of {validated.rows_in} rows quarantined",
    )


def read_landed_day(lake: LakeResource, day: str) -> tuple[pd.DataFrame, int]:
    """All batches landed for `day`, deduplicated by event_id (batches in name order; the first one wins)."""
    files = sorted(lake.pull(LANDING, f"event_date={day}").glob("*.parquet"))
    if not files:
        raise dg.Failure(f"nothing landed for event_date={day}: materialise source_events first")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    duplicated = frame.duplicated("event_id", keep="first")
    frame = frame[~duplicated].sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    return frame[list(EVENT_COLUMNS)], int(duplicated.sum())


@dg.asset(
    deps=["source_events"],
    partitions_def=event_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("contract_v1", asset=RAW_EVENTS, description="every row passes EventSchemaV1, ids unique")
    ],
    description="The clean event log: contract-v1 events, one partition per UTC day, unique event ids.",
)
def raw_events(context: dg.AssetExecutionContext, lake: LakeResource):
    rows = duplicates = 0
    starts, ends, failures = [], [], []
    sample = None
    for day in context.partition_keys:
        events, dropped = read_landed_day(lake, day)
        try:
            EventSchemaV1.validate(events, lazy=True)
        except Exception as error:  # noqa: BLE001 - reported through the check, with the reason
            failures.append(f"{day}: {error}")
        if events["event_id"].duplicated().any():
            failures.append(f"{day}: duplicate event ids")
        with lake.replace(RAW_EVENTS, f"event_date={day}") as target:
            _write_events(events, target / "part-0.parquet")
        rows += len(events)
        duplicates += dropped
        starts.append(events["event_time"].min())
        ends.append(events["event_time"].max())
        sample = events if sample is None else sample
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "partitions": len(context.partition_keys),
            "duplicates_dropped": duplicates,
            **time_range(min(starts), max(ends)),
            "sample_rows": sample_rows(sample),
        }
    )
    yield dg.AssetCheckResult(
        check_name="contract_v1", passed=not failures, metadata={"failures": dg.MetadataValue.json(failures[:20])}
    )
