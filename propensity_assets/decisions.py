"""The decision log, session outcomes and labelled decisions: daily lake tables, one partition per UTC day.

- `decision_log`: the day's decisions of an endpoint (`propensity.monitoring.decisions`), read from the local
  runtime's inference log or, with `PROPENSITY_DEPLOYER=sagemaker`, from the endpoint's SageMaker Data Capture.
- `session_outcomes`: the sessions of the lake's `session_events` that started that day, with purchase, revenue
  and time to purchase.
- `labelled_decisions`: the day's decisions whose label has matured. It reads `session_events` itself rather than
  `session_outcomes`, so a session's outcome is as fresh as the events are: an outcome table written while a session
  was still open would label it too early. "Now" is the earlier of the clock and the newest event in the lake, so
  events that have not landed yet never count as a session having closed.

Days are UTC days (the contract's time zone, and SageMaker's hour folders). Each partition is written whole to
`<table>/date=YYYY-MM-DD/data.parquet` (the lake replaces it atomically: a re-run replaces its own day).
"""

from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from propensity.features.definitions import SESSION_GAP_MINUTES
from propensity.monitoring.decisions import (
    DECISION_COLUMNS,
    LABELLED_COLUMNS,
    OUTCOME_COLUMNS,
    READ_ERRORS,
    READ_QUARANTINE,
    TIME_DTYPE,
    day_bounds,
    decisions_from_data_capture,
    decisions_from_inference_log,
    label_decisions,
    on_day,
    session_outcomes,
)
from propensity.settings import settings
from propensity_assets.metadata import sample_rows, time_range
from resources.lake import LakeResource
from serving.control.data_capture import DataCaptureReader, capture_destination
from serving.endpoint_state import EndpointFiles

DECISION_LOG = "decision_log"
SESSION_OUTCOMES = "session_outcomes"
LABELLED_DECISIONS = "labelled_decisions"
SESSION_EVENTS = "session_events"
# end_offset=1: today is a partition too, refreshed during the day (the monitors judge today's traffic).
DECISION_DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
# A session that started the day before can hold the day's decisions, and one that starts late runs past midnight.
EVENT_WINDOW = (pd.Timedelta(days=-1), pd.Timedelta(days=2))
_OUTCOME_EVENT_COLUMNS = ["session_id", "user_id", "event_time", "event_type", "price", "quantity"]


PARTITION_FILE = "data.parquet"


def partition_file(lake: LakeResource, table: str, day: str) -> Path:
    """One day of a table as the lake holds it now (in the working copy)."""
    return lake.pull(table, f"date={day}") / PARTITION_FILE


_ARROW_TYPES = {"object": pa.string(), "float64": pa.float64(), "bool": pa.bool_(), "int64": pa.int64()}


def arrow_schema(columns: dict[str, object]) -> pa.Schema:
    """The table's parquet schema from its column contract. Fixed, so a day whose text column is all null (no
    offer shown) is still a string column and the days read back as one table."""
    return pa.schema(
        [
            (name, pa.timestamp("us", tz="UTC") if dtype == TIME_DTYPE else _ARROW_TYPES[str(dtype)])
            for name, dtype in columns.items()
        ]
    )


def write_partition(lake: LakeResource, table: str, day: str, frame: pd.DataFrame, columns: dict) -> Path:
    """Replace one day of a table whole (a reader sees the old day or the new one, never half of one)."""
    with lake.replace(table, f"date={day}") as staging:
        pq.write_table(
            pa.Table.from_pandas(frame, schema=arrow_schema(columns), preserve_index=False), staging / PARTITION_FILE
        )
    return lake.path(table, f"date={day}", PARTITION_FILE)


def read_partition(lake: LakeResource, table: str, day: str) -> pd.DataFrame:
    path = partition_file(lake, table, day)
    if not path.exists():
        raise dg.Failure(f"{table} has no partition {day} at {path}: materialise {table} for {day} first")
    return pd.read_parquet(path)


def _session_events_path(lake: LakeResource) -> Path:
    return lake.pull_table(SESSION_EVENTS)


def session_events_around(lake: LakeResource, day: str) -> pd.DataFrame:
    """The events from the day before to the day after `day` (only the columns outcomes need)."""
    start, _ = day_bounds(day)
    low, high = start + EVENT_WINDOW[0], start + EVENT_WINDOW[1]
    return pd.read_parquet(
        _session_events_path(lake),
        columns=_OUTCOME_EVENT_COLUMNS,
        filters=[("event_time", ">=", low), ("event_time", "<", high)],
    )


def session_events_of(lake: LakeResource, session_ids: list[str]) -> pd.DataFrame:
    """The events of the given sessions (only the columns outcomes need)."""
    if not session_ids:
        return pd.DataFrame(columns=_OUTCOME_EVENT_COLUMNS)
    return pd.read_parquet(
        _session_events_path(lake), columns=_OUTCOME_EVENT_COLUMNS, filters=[("session_id", "in", session_ids)]
    )


def latest_event_time(lake: LakeResource) -> pd.Timestamp | None:
    """The newest event in the lake: how far the events have landed."""
    table = pq.read_table(_session_events_path(lake), columns=["event_time"])
    latest = pc.max(table["event_time"]).as_py()
    if latest is None:
        return None
    latest = pd.Timestamp(latest)
    return latest.tz_localize("UTC") if latest.tzinfo is None else latest.tz_convert("UTC")


def _counts(frame: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    by_version = frame.groupby(["model_version", "variant"]).size()
    return {
        "treated": int(frame["treated"].sum()),
        "holdout": int(frame["holdout"].sum()),
        "fallbacks": int(frame["fallback"].sum()),
        "sessions": int(frame["session_id"].nunique()),
        "by_model_version_and_variant": dg.MetadataValue.json(
            [{"model_version": v, "variant": n, "rows": int(c)} for (v, n), c in by_version.items()]
        ),
    }


class DecisionLogConfig(dg.Config):
    endpoint: str = "propensity"  # the endpoint whose decisions are read (the deploy asset's default)


@dg.asset(
    partitions_def=DECISION_DAYS,
    group_name="decisions",
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("no_duplicate_decisions", asset=DECISION_LOG),
        dg.AssetCheckSpec("holdout_never_treated", asset=DECISION_LOG),
        dg.AssetCheckSpec("every_log_line_read", asset=DECISION_LOG),
    ],
    description="The day's scored rows of the endpoint: score, features used and the intervention decision "
    "(local inference log, or SageMaker Data Capture with PROPENSITY_DEPLOYER=sagemaker).",
)
def decision_log(context: dg.AssetExecutionContext, config: DecisionLogConfig, lake: LakeResource):
    day = context.partition_key
    current = settings()
    if current.deployer == "sagemaker":
        reader = DataCaptureReader.from_settings(current)
        source = f"{capture_destination(reader.bucket, reader.prefix)}/{config.endpoint}/"
        read = decisions_from_data_capture(reader.records(config.endpoint, date.fromisoformat(day)), config.endpoint)
    else:
        path = EndpointFiles(config.endpoint).inference_log
        source = str(path)
        read = decisions_from_inference_log(path, config.endpoint)
    frame = on_day(read, "decided_at", day)
    written = write_partition(lake, DECISION_LOG, day, frame, DECISION_COLUMNS)
    quarantine = read.attrs[READ_QUARANTINE]
    if quarantine:
        context.log.warning(f"{len(quarantine)} unreadable lines or records in {source}: {quarantine[:3]}")
    metadata = {
        "dagster/row_count": len(frame),
        "source": source,
        "path": str(written),
        "errors_in_source": read.attrs[READ_ERRORS],
        "quarantined_in_source": len(quarantine),
        **time_range(frame["decided_at"].min(), frame["decided_at"].max()),
        **_counts(frame),
        "sample_rows": sample_rows(frame[["request_id", "decided_at", "session_id", "propensity", "treated"]]),
    }
    yield dg.MaterializeResult(metadata=metadata)
    duplicated = int(frame.duplicated(["request_id", "session_id"]).sum())
    yield dg.AssetCheckResult(
        check_name="no_duplicate_decisions",
        passed=duplicated == 0,
        metadata={"duplicated_rows": duplicated},
        description="A (request id, session) logged twice: a log line repeated or a capture object read twice.",
    )
    contradictory = int(
        (frame["treated"] & frame["holdout"]).sum() + (frame["treated"] & (frame["treatment_probability"] <= 0)).sum()
    )
    yield dg.AssetCheckResult(
        check_name="holdout_never_treated",
        passed=contradictory == 0,
        metadata={"contradictory_rows": contradictory},
        description="A treated row in the holdout, or treated with a logged probability of 0: the logged policy "
        "is not what was served, and the treated-vs-holdout comparison would be biased.",
    )
    yield dg.AssetCheckResult(
        check_name="every_log_line_read",
        passed=not quarantine,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": len(quarantine), "first": dg.MetadataValue.json(quarantine[:5])},
    )


@dg.asset(
    name=SESSION_OUTCOMES,
    partitions_def=DECISION_DAYS,
    deps=[SESSION_EVENTS],
    group_name="decisions",
    kinds={"pandas", "parquet"},
    description="Sessions that started on the day: start, end, purchase, first purchase time, revenue, time to "
    "purchase (from session_events; a session still open is as far as its events have come).",
)
def session_outcomes_asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    day = context.partition_key
    outcomes = on_day(session_outcomes(session_events_around(lake, day)), "session_start", day)
    written = write_partition(lake, SESSION_OUTCOMES, day, outcomes, OUTCOME_COLUMNS)
    purchased = outcomes[outcomes["purchased"]]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(outcomes),
            "path": str(written),
            "purchase_rate": float(outcomes["purchased"].mean()) if len(outcomes) else 0.0,
            "revenue": float(outcomes["revenue"].sum()),
            "median_time_to_purchase_s": float(purchased["time_to_purchase_s"].median()) if len(purchased) else 0.0,
            **time_range(outcomes["session_start"].min(), outcomes["session_start"].max()),
        }
    )


class LabelConfig(dg.Config):
    # a session has closed once nothing happened in it for this long: the sessionisation gap by default
    maturity_s: float = SESSION_GAP_MINUTES * 60.0
    # share of the day's matured decisions whose session the lake does not know, above which the check warns
    max_unmatched_share: float = 0.05


@dg.asset(
    partitions_def=DECISION_DAYS,
    deps=[DECISION_LOG, SESSION_EVENTS],
    group_name="decisions",
    kinds={"pandas", "parquet"},
    check_specs=[dg.AssetCheckSpec("decisions_find_their_sessions", asset=LABELLED_DECISIONS)],
    description="The day's decisions whose session has closed, labelled: purchased at or after the decision, "
    "revenue, time to purchase (decisions after the session's first purchase are left out).",
)
def labelled_decisions(context: dg.AssetExecutionContext, config: LabelConfig, lake: LakeResource):
    day = context.partition_key
    decisions = read_partition(lake, DECISION_LOG, day)
    # By session id, not by day: a replayed or simulated store's events carry their own clock (label_decisions).
    outcomes = session_outcomes(session_events_of(lake, decisions["session_id"].unique().tolist()))
    latest = latest_event_time(lake)
    now = pd.Timestamp(datetime.now(timezone.utc))
    as_of = now if latest is None else min(now, latest)
    labelled = label_decisions(decisions, outcomes, as_of=as_of, maturity_s=config.maturity_s)
    written = write_partition(lake, LABELLED_DECISIONS, day, labelled, LABELLED_COLUMNS)

    known = decisions["session_id"].isin(outcomes["session_id"])
    labelled_rows = decisions.set_index(["request_id", "session_id"]).index.isin(
        labelled.set_index(["request_id", "session_id"]).index
    )
    session_end = decisions["session_id"].map(outcomes.set_index("session_id")["session_end"])
    closed = known & (session_end + pd.Timedelta(seconds=config.maturity_s) <= as_of)
    # Decisions old enough to have matured by now whose session the lake still does not know.
    old_enough = decisions["decided_at"] + pd.Timedelta(seconds=config.maturity_s) <= now
    unmatched = int((old_enough & ~known).sum())
    unmatched_share = unmatched / max(int(old_enough.sum()), 1)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(labelled),
            "path": str(written),
            "decisions": len(decisions),
            "left_out_after_purchase": int((known & closed & ~labelled_rows).sum()),
            "waiting_for_maturity": int((known & ~closed).sum()),
            "without_session_in_lake": int((~known).sum()),
            "label_rate": float(labelled["label"].mean()) if len(labelled) else 0.0,
            "revenue": float(labelled["revenue"].sum()),
            "as_of": as_of.isoformat(),
            "latest_event_in_lake": latest.isoformat() if latest is not None else "none",
            "maturity_s": config.maturity_s,
        }
    )
    yield dg.AssetCheckResult(
        check_name="decisions_find_their_sessions",
        passed=unmatched_share <= config.max_unmatched_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unmatched": unmatched, "unmatched_share": unmatched_share, "limit": config.max_unmatched_share},
        description="Matured decisions whose session has no events in the lake: the storefront's session ids and "
        "the lake's disagree, or events are not landing; those decisions can never be labelled.",
    )


# For propensity_assets/definitions.py.
DECISION_ASSETS = [decision_log, session_outcomes_asset, labelled_decisions]
