"""One micro-batch of the stream: messages in, in-session features online, events archived, bad input quarantined.

Spark Structured Streaming drives this (`propensity.streaming.job`) through `foreachBatch`; everything here is plain
pandas so it is tested without Spark. Per batch:
1. parse: each message's value must be a JSON object with exactly the contract's fields; anything else is
   quarantined as `malformed` with the parser's message;
2. validate with the event contract (`validate_events`): failures are quarantined with the contract's reasons.
   The common batch, every message a valid event, takes a plain-Python pass instead (`parse_valid_events`: one
   event at a time with `propensity.event_record`, whose verdicts equal the frame validator's): no DataFrame of raw
   rows and no pandera run, the largest fixed cost of a small micro-batch. One message that is not such an event
   sends the whole batch down the frame path, so quarantine reasons and the duplicate rule are the frame
   validator's;
3. drop replays: an event id already folded for its session (a producer retry, a re-sent batch) is counted, not
   folded again;
4. late events: an event older than its session's last folded event cannot join the running fold (features move
   forward in time). It is quarantined as `late` and not archived, so the batch path, which reads the archive,
   computes exactly what the stream served. Out-of-order events inside one micro-batch are simply sorted;
5. fold onto the carried session states with `fold_session_events`, the function the batch job uses, and write
   each session's newest feature row to the online store;
6. archive the folded events to the lake (`stream_events`, one parquet file per batch id) and the quarantine to
   `stream_quarantine` (and to the dead-letter topic when there is one);
7. expire sessions idle for longer than the session gap plus the allowed lateness and write the state snapshot for
   this batch id. Idle is measured against the watermark: the newest event time seen on each partition, then the
   oldest of those (partitions run at their own pace, and a session lives on one partition, keyed by session id),
   so a session is never expired because another partition is ahead.

An online store that cannot be reached (`OnlineStoreUnreachable`) does not fail the batch: its write is retried with
backoff (0.2 s doubling to 5 s) until the store answers, so the job rides out an outage and resumes by itself; the
batch's report counts the retries. A stop requested meanwhile (`stopping`) abandons the batch instead (`Abandoned`):
Spark has not committed it, so the next start runs it again.

Exactly once, with Spark's checkpoint: Spark replays a batch whose commit it did not record, with the same batch id
and the same messages. Batch N always starts from the snapshot of the batch before it, and every write is keyed by
the batch id (archive and quarantine files are replaced, online rows are upserts of the same values), so a replayed
batch has the same effect as one run: no loss, no double count.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE, events_to_arrow, validate_events
from propensity.event_record import InvalidEvent, validate_event
from propensity.features.definitions import (
    FOLD_STATE_ID_FIELDS,
    FOLD_STATE_TIME_FIELD,
    SESSION_FEATURE_NAMES,
    SESSION_GAP_MINUTES,
)
from propensity.features.session import SessionState, fold_session_events, held
from propensity.paths import write_text_atomic
from propensity.sources.contract_files import contract_json_lines
from propensity.streaming import ALLOWED_LATENESS_S

ALLOWED_LATENESS = pd.Timedelta(seconds=ALLOWED_LATENESS_S)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
LOG = logging.getLogger("propensity.streaming")


class OnlineStoreUnreachable(RuntimeError):
    """The online store did not answer (connection refused or lost, timed out): worth retrying."""


class Abandoned(RuntimeError):
    """A stop was requested while the batch waited for the online store: it was not committed."""


OnlineWriter = Callable[[pd.DataFrame], None]  # newest feature row and fold state per session -> the online store
DeadLetter = Callable[[pd.DataFrame], None]  # quarantined messages -> a dead-letter topic


@dataclass
class BatchReport:
    batch_id: int
    messages: int = 0
    folded: int = 0
    sessions_written: int = 0
    quarantined: int = 0
    replays_dropped: int = 0
    late: int = 0
    online_retries: int = 0  # writes to the online store retried while it was unreachable
    active_sessions: int = 0
    max_event_time: str | None = None
    seconds: float = 0.0
    reasons: dict = field(default_factory=dict)


def _ts(value):
    return None if value is None else pd.Timestamp(value)


class StreamState:
    """Per-session fold state plus the event ids already folded, the event clock of each partition."""

    def __init__(
        self,
        sessions: dict[str, SessionState] | None = None,
        seen: dict[str, set[str]] | None = None,
        max_event_time: pd.Timestamp | None = None,
        partition_clock: dict[str, pd.Timestamp] | None = None,
    ):
        self.sessions = sessions or {}
        self.seen = seen or {}
        self.max_event_time = max_event_time
        self.partition_clock = partition_clock or {}  # partition -> newest event time seen on it

    @property
    def watermark(self) -> pd.Timestamp | None:
        return min(self.partition_clock.values()) if self.partition_clock else None

    def _clocks(self) -> dict:
        return {
            "max_event_time": None if self.max_event_time is None else self.max_event_time.isoformat(),
            "partition_clock": {p: t.isoformat() for p, t in self.partition_clock.items()},
        }

    def _session(self, sid: str) -> dict:
        s = self.sessions[sid]
        return {
            "user_id": s.user_id,
            "first_time": s.first_time.isoformat(),
            "last_time": s.last_time.isoformat(),
            "previous_time": None if s.previous_time is None else s.previous_time.isoformat(),
            "counts": s.counts,
            "cart_value": s.cart_value,
            "products": sorted(s.products),
            "categories": sorted(s.categories),
            "last_event_ids": sorted(s.last_event_ids),
            "seen": sorted(self.seen.get(sid, ())),
        }

    def to_json(self) -> str:
        return json.dumps({**self._clocks(), "sessions": {sid: self._session(sid) for sid in self.sessions}})

    def delta_json(self, changed: set[str], expired: list[str]) -> str:
        """Only what one batch changed: the sessions it folded, the ones it expired, the clocks."""
        return json.dumps(
            {
                **self._clocks(),
                "sessions": {sid: self._session(sid) for sid in changed if sid in self.sessions},
                "expired": expired,
            }
        )

    def apply(self, payload: dict) -> "StreamState":
        for sid, s in payload["sessions"].items():
            self.sessions[sid] = SessionState(
                user_id=s["user_id"],
                first_time=_ts(s["first_time"]),
                last_time=_ts(s["last_time"]),
                previous_time=_ts(s["previous_time"]),
                counts=s["counts"],
                cart_value=s["cart_value"],
                products=frozenset(s["products"]),
                categories=frozenset(s["categories"]),
                last_event_ids=frozenset(s.get("last_event_ids", ())),  # absent in snapshots of earlier versions
            )
            self.seen[sid] = set(s["seen"])
        for sid in payload.get("expired", []):
            self.sessions.pop(sid, None)
            self.seen.pop(sid, None)
        self.max_event_time = _ts(payload["max_event_time"])
        self.partition_clock = {p: _ts(t) for p, t in payload.get("partition_clock", {}).items()}
        return self

    @classmethod
    def from_json(cls, text: str) -> "StreamState":
        return cls().apply(json.loads(text))


class SnapshotStore:
    """The state after each batch id, durable: a full snapshot every `FULL_EVERY` batches (`state-<id>.json`) and
    a delta of what each other batch changed (`delta-<id>.json`), so a batch writes what it touched, not every
    session held. Batch N starts from the state after N-1 (a replayed N never sees its own writes)."""

    FULL_EVERY = 50

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _ids(self, kind: str) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob(f"{kind}-*.json"))

    def before(self, batch_id: int) -> StreamState:
        fulls = [i for i in self._ids("state") if i < batch_id]
        state = (
            StreamState.from_json((self.directory / f"state-{fulls[-1]}.json").read_text()) if fulls else StreamState()
        )
        start = fulls[-1] if fulls else -1
        for i in range(start + 1, batch_id):
            delta = self.directory / f"delta-{i}.json"
            if not delta.exists():
                raise RuntimeError(f"stream state for batch {i} is missing ({delta}): the state directory was damaged")
            state.apply(json.loads(delta.read_text()))
        return state

    def write(self, batch_id: int, state: StreamState, changed: set[str], expired: list[str]) -> None:
        full = batch_id % self.FULL_EVERY == 0 or not any(i < batch_id for i in self._ids("state"))
        name = f"state-{batch_id}.json" if full else f"delta-{batch_id}.json"
        text = state.to_json() if full else state.delta_json(changed, expired)
        write_text_atomic(self.directory / name, text)
        (self.directory / (f"delta-{batch_id}.json" if full else f"state-{batch_id}.json")).unlink(missing_ok=True)
        if full:  # everything before the previous full snapshot is no longer needed to rebuild any batch
            earlier = [i for i in self._ids("state") if i < batch_id]
            if earlier:
                for kind in ("state", "delta"):
                    for i in self._ids(kind):
                        if i < earlier[-1]:
                            (self.directory / f"{kind}-{i}.json").unlink(missing_ok=True)


def parse_messages(messages: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """JSON values -> (raw contract rows with their message positions, malformed messages with reasons)."""
    rows, positions, bad = [], [], []
    for position, value in enumerate(messages["value"].tolist()):
        text = value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else value
        try:
            record = json.loads(text)
        except (TypeError, ValueError) as error:
            bad.append((position, f"malformed: not JSON ({error})"))
            continue
        if not isinstance(record, dict):
            bad.append((position, f"malformed: a JSON {type(record).__name__}, not an object"))
            continue
        missing = [c for c in EVENT_COLUMNS if c not in record]
        unknown = sorted(set(record) - set(EVENT_COLUMNS))
        if missing or unknown:
            bad.append(
                (
                    position,
                    f"malformed: missing fields {missing}" if missing else f"malformed: unknown fields {unknown}",
                )
            )
            continue
        rows.append(record)
        positions.append(position)
    raw = pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).astype("object")
    raw.index = positions
    malformed = pd.DataFrame(bad, columns=["position", "reason"])
    return raw, malformed


def online_rows(newest: pd.DataFrame, states: dict[str, SessionState]) -> pd.DataFrame:
    """Each session's newest feature row with its fold state (sorted lists, as the batch table holds them)."""
    rows = newest[["session_id", "user_id", "event_timestamp", *SESSION_FEATURE_NAMES]].reset_index(drop=True)
    folded = [states[sid] for sid in rows["session_id"]]
    product_ids, category_ids, last_event_ids = FOLD_STATE_ID_FIELDS
    rows[product_ids] = [sorted(s.products) for s in folded]
    rows[category_ids] = [sorted(s.categories) for s in folded]
    rows[last_event_ids] = [sorted(s.last_event_ids) for s in folded]
    rows[FOLD_STATE_TIME_FIELD] = rows["event_timestamp"].astype(EVENT_TIME_DTYPE).astype("int64")
    return rows


_COLUMN_SET = frozenset(EVENT_COLUMNS)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def parse_valid_events(messages: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.Timestamp], int] | None:
    """A batch whose every message is a valid contract event, in one plain-Python pass: (events as `validate_events`
    returns them, newest event time per partition, duplicates dropped). None as soon as one message is anything
    else: the caller then runs the frame path over the whole batch."""
    events, seen, duplicates = [], set(), 0
    newest: dict[str, int] = {}
    for value, partition in zip(messages["value"].tolist(), messages["partition"].tolist()):
        try:
            record = json.loads(value)  # bytes or str; invalid UTF-8 raises
        except (TypeError, ValueError):
            return None
        if not isinstance(record, dict) or record.keys() != _COLUMN_SET:
            return None
        try:
            event = validate_event(record)
        except InvalidEvent:
            return None
        micros = (event.event_time - _EPOCH) // _MICROSECOND
        key = str(partition)
        if micros > newest.get(key, micros - 1):
            newest[key] = micros
        if event.event_id in seen:  # the first of a repeated id wins, as in validate_events
            duplicates += 1
            continue
        seen.add(event.event_id)
        events.append((event, micros))
    frame = pd.DataFrame(
        {
            name: [getattr(e, name) for e, _ in events]
            for name in ("event_id", "user_id", "session_id", "event_type", "product_id", "category_id")
        }
    )
    frame.insert(1, "event_time", pd.to_datetime(np.array([m for _, m in events], dtype="int64"), unit="us", utc=True))
    frame["price"] = np.array([np.nan if e.price is None else e.price for e, _ in events], dtype="float64")
    frame["quantity"] = pd.array([e.quantity for e, _ in events], dtype="Int64")
    frame["source"] = [e.source for e, _ in events]
    clocks = {p: pd.Timestamp(m, unit="us", tz="UTC") for p, m in newest.items()}
    return frame[list(EVENT_COLUMNS)].astype({"event_time": EVENT_TIME_DTYPE}), clocks, duplicates


class SessionStreamProcessor:
    def __init__(
        self,
        state_dir: Path,
        archive_dir: Path,
        quarantine_dir: Path,
        write_online: OnlineWriter,
        dead_letter: DeadLetter | None = None,
        allowed_lateness: pd.Timedelta = ALLOWED_LATENESS,
        stopping: threading.Event | None = None,
    ):
        self.snapshots = SnapshotStore(state_dir)
        self.archive_dir = Path(archive_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.write_online = write_online
        self.dead_letter = dead_letter
        self.stopping = stopping or threading.Event()
        self.expiry = pd.Timedelta(minutes=SESSION_GAP_MINUTES) + allowed_lateness
        self._state: StreamState | None = None  # the state after `_state_batch`, kept between batches
        self._state_batch: int | None = None

    def process(self, batch_id: int, messages: pd.DataFrame) -> BatchReport:
        """One micro-batch. `messages` has Kafka's columns `value` (bytes or str), `partition` and `offset`; the
        file source gives -1 for the last two."""
        started = time.perf_counter()
        report = BatchReport(batch_id=batch_id, messages=len(messages))
        # The state in memory is the one after the previous batch; anything else (a restart, a replay, a batch that
        # failed half way) reads it back from the snapshots.
        state = (
            self._state
            if self._state is not None and self._state_batch == batch_id - 1
            else self.snapshots.before(batch_id)
        )
        self._state = None
        messages = messages.reset_index(drop=True)
        now = pd.Timestamp.now(tz="UTC")
        quarantine: list[pd.DataFrame] = []

        fast = parse_valid_events(messages) if len(messages) else None
        if fast is not None:
            events, clocks, duplicates = fast
            for partition, newest_time in clocks.items():
                current = state.partition_clock.get(partition)
                state.partition_clock[partition] = newest_time if current is None else max(current, newest_time)
            report.replays_dropped += duplicates
        else:
            events = self._parse_and_validate(messages, state, quarantine, report, now, batch_id)

        if len(events):
            seen = pd.Series(False, index=events.index)
            carried = held(events["session_id"], state.seen)
            if carried.any():
                seen[carried] = [
                    e in state.seen[s]
                    for s, e in zip(events.loc[carried, "session_id"], events.loc[carried, "event_id"])
                ]
            report.replays_dropped += int(seen.sum())
            events = events[~seen]
        if len(events):
            last = events["session_id"].map(
                {sid: state.sessions[sid].last_time for sid in events["session_id"].unique() if sid in state.sessions}
            )
            late = last.notna() & (events["event_time"] < last.astype(EVENT_TIME_DTYPE))
            if late.any():
                behind = (last[late].astype(EVENT_TIME_DTYPE) - events.loc[late, "event_time"]).dt.total_seconds()
                late_rows = events[late]
                quarantine.append(
                    self._quarantine_events(
                        late_rows,
                        [f"late: {b:.0f} s older than its session's last processed event" for b in behind],
                        now,
                        batch_id,
                    )
                )
                report.late = int(late.sum())
                events = events[~late]

        if len(events):
            events = events.sort_values(["session_id", "event_time", "event_id"], kind="stable").reset_index(drop=True)
            rows, new_states = fold_session_events(events, state.sessions)
            newest = rows.groupby("session_id", sort=False).tail(1)
            report.online_retries = self._write_online(online_rows(newest, new_states), batch_id)
            state.sessions.update(new_states)
            for sid, event_id in zip(events["session_id"], events["event_id"]):
                state.seen.setdefault(sid, set()).add(event_id)
            batch_max = events["event_time"].max()
            state.max_event_time = batch_max if state.max_event_time is None else max(state.max_event_time, batch_max)
            self._write_parquet(self.archive_dir, batch_id, events_to_arrow(events[list(EVENT_COLUMNS)]))
            report.folded, report.sessions_written = len(events), len(newest)

        if quarantine:
            bad = pd.concat(quarantine, ignore_index=True)
            self._write_parquet(self.quarantine_dir, batch_id, bad)
            if self.dead_letter is not None:
                self.dead_letter(bad)
            report.quarantined = len(bad)
            report.reasons = bad["reason"].str.split(":").str[0].value_counts().to_dict()

        expired: list[str] = []
        if state.watermark is not None:
            horizon = state.watermark - self.expiry
            expired = [sid for sid, s in state.sessions.items() if s.last_time < horizon]
            for sid in expired:
                state.sessions.pop(sid)
                state.seen.pop(sid, None)
        changed = set(events["session_id"]) if len(events) else set()
        self.snapshots.write(batch_id, state, changed, expired)
        self._state, self._state_batch = state, batch_id
        report.active_sessions = len(state.sessions)
        report.max_event_time = None if state.max_event_time is None else state.max_event_time.isoformat()
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    def _parse_and_validate(self, messages, state, quarantine: list, report, now, batch_id) -> pd.DataFrame:
        """The frame path: every message parsed, malformed ones and contract failures quarantined with reasons."""
        raw, malformed = parse_messages(messages)
        self._advance_clocks(state, raw, messages)
        if len(malformed):
            quarantine.append(
                self._quarantine_rows(messages, malformed["position"], malformed["reason"], now, batch_id)
            )
        validated = validate_events(raw.reset_index(drop=True), now=now) if len(raw) else None
        if validated is None:
            return pd.DataFrame()
        if len(validated.quarantine):
            positions = raw.index.to_numpy()[validated.quarantine_positions]  # back to the messages
            reasons = validated.quarantine["reason"].map(lambda r: f"contract: {r}")
            quarantine.append(self._quarantine_rows(messages, pd.Series(positions), reasons, now, batch_id))
        report.replays_dropped += validated.duplicates_dropped
        return validated.valid

    def _write_online(self, rows: pd.DataFrame, batch_id: int) -> int:
        """The write, retried with backoff while the online store is unreachable; returns the retries it took."""
        delay, retries = RETRY_FIRST_S, 0
        while True:
            try:
                self.write_online(rows)
                if retries:
                    LOG.warning("batch %s: the online store answers again after %s retries", batch_id, retries)
                return retries
            except OnlineStoreUnreachable as error:
                if self.stopping.is_set():
                    raise Abandoned(f"batch {batch_id} abandoned while the online store was unreachable") from error
                LOG.warning("batch %s waits for the online store (%s); retrying in %.1f s", batch_id, error, delay)
                retries += 1
                if self.stopping.wait(delay):
                    raise Abandoned(f"batch {batch_id} abandoned while the online store was unreachable") from error
                delay = min(delay * 2, RETRY_MAX_S)

    @staticmethod
    def _advance_clocks(state: StreamState, raw: pd.DataFrame, messages: pd.DataFrame) -> None:
        if raw.empty:
            return
        times = pd.to_datetime(raw["event_time"], errors="coerce", utc=True, format="ISO8601")  # as the contract parses
        partitions = messages["partition"].to_numpy()[raw.index.to_numpy()]
        newest = pd.Series(times.to_numpy(), index=[str(p) for p in partitions]).groupby(level=0).max().dropna()
        for partition, newest_time in newest.items():
            current = state.partition_clock.get(partition)
            state.partition_clock[partition] = newest_time if current is None else max(current, newest_time)

    @staticmethod
    def _quarantine_rows(messages, positions: pd.Series, reasons: pd.Series, now, batch_id) -> pd.DataFrame:
        picked = messages.iloc[positions.to_numpy()]
        values = [
            v.decode("utf-8", errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)
            for v in picked["value"]
        ]
        return pd.DataFrame(
            {
                "partition": picked["partition"].astype("int64").to_numpy(),
                "offset": picked["offset"].astype("int64").to_numpy(),
                "message": values,
                "reason": reasons.to_numpy(),
                "quarantined_at": now.isoformat(),
                "batch_id": batch_id,
            }
        )

    @staticmethod
    def _quarantine_events(events: pd.DataFrame, reasons: list[str], now, batch_id) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "partition": -1,
                "offset": -1,
                "message": contract_json_lines(events),
                "reason": reasons,
                "quarantined_at": now.isoformat(),
                "batch_id": batch_id,
            }
        )

    @staticmethod
    def _write_parquet(directory: Path, batch_id: int, table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        path = directory / f"batch-{batch_id:09d}.parquet"
        tmp = directory / f".batch-{batch_id:09d}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # a replayed batch replaces its own file
