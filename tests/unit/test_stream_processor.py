"""The stream's micro-batch logic without Spark: quarantine reasons, replays, late events, idempotent batches."""

import json
import time

import pandas as pd
import pytest

from propensity.features.session import fold_session_events
from propensity.sources.contract_files import contract_json_lines
from propensity.sources.simulator import simulate_traffic
from propensity.streaming.processor import SessionStreamProcessor, StreamState
from tests.conftest import contract_events


def messages(lines: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": None,
            "value": [line.encode() for line in lines],
            "partition": 0,
            "offset": range(len(lines)),
            "timestamp": None,
        }
    )


class OnlineStore:
    """What the processor pushed, newest row per session (an upsert, like the real store)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def write(self, frame: pd.DataFrame) -> None:
        for row in frame.to_dict("records"):
            self.rows[row["session_id"]] = row


@pytest.fixture
def processor(tmp_path):
    store = OnlineStore()
    dead = []
    proc = SessionStreamProcessor(
        tmp_path / "state", tmp_path / "archive", tmp_path / "quarantine", store.write, dead.append
    )
    return proc, store, dead, tmp_path


def test_online_rows_equal_the_batch_fold_whatever_the_batching(processor):
    proc, store, _, tmp_path = processor
    events = simulate_traffic(n_users=150, days=1, seed=5).events
    lines = contract_json_lines(events)
    for batch_id, start in enumerate(range(0, len(lines), 97)):
        proc.process(batch_id, messages(lines[start : start + 97]))
    expected = fold_session_events(events.sort_values(["session_id", "event_time", "event_id"]))[0]
    expected = expected.groupby("session_id").tail(1).set_index("session_id")
    assert set(store.rows) == set(expected.index)
    for sid, row in store.rows.items():
        for feature in (
            "session_events",
            "session_cart_value",
            "session_distinct_products",
            "session_duration_s",
            "session_seconds_since_previous_event",
        ):
            assert row[feature] == expected.loc[sid, feature], (sid, feature)
    assert len(pd.read_parquet(tmp_path / "archive")) == len(events)


def test_bad_messages_are_quarantined_with_reasons_and_sent_to_the_dead_letter_topic(processor):
    proc, store, dead, tmp_path = processor
    good = contract_events(
        [
            {
                "event_id": "e1",
                "event_time": "2026-11-02T10:00:00Z",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "page_view",
            }
        ]
    )
    line = contract_json_lines(good)[0]
    negative = json.dumps({**json.loads(line), "event_id": "e2", "price": -1.0})
    unknown_type = json.dumps({**json.loads(line), "event_id": "e3", "event_type": "teleport"})
    extra = json.dumps({**json.loads(line), "event_id": "e4", "coupon": "X"})
    report = proc.process(0, messages([line, "{not json", "[1, 2]", negative, unknown_type, extra]))
    assert report.folded == 1 and report.quarantined == 5
    quarantine = pd.read_parquet(tmp_path / "quarantine").sort_values("offset")
    assert quarantine["offset"].tolist() == [1, 2, 3, 4, 5]  # each reject points at its message
    reasons = quarantine["reason"].tolist()
    assert reasons[0].startswith("malformed: not JSON") and reasons[1] == "malformed: a JSON list, not an object"
    assert reasons[2].startswith("contract: price") and reasons[3].startswith("contract: event_type")
    assert reasons[4] == "malformed: unknown fields ['coupon']"
    assert len(dead) == 1 and len(dead[0]) == 5 and store.rows["s1"]["session_events"] == 1


def test_replayed_batch_and_replayed_events_change_nothing(processor):
    proc, store, _, tmp_path = processor
    rows = [
        {
            "event_id": f"e{i}",
            "event_time": f"2026-11-02T10:0{i}:00Z",
            "user_id": "u1",
            "session_id": "s1",
            "event_type": "add_to_cart",
            "price": 10.0,
        }
        for i in range(4)
    ]
    lines = contract_json_lines(contract_events(rows))
    proc.process(0, messages(lines[:2]))
    proc.process(1, messages(lines[2:]))
    first = dict(store.rows["s1"])
    proc.process(1, messages(lines[2:]))  # Spark replays batch 1 after a crash before its commit
    assert store.rows["s1"] == first and first["session_events"] == 4 and first["session_cart_value"] == 40.0
    report = proc.process(2, messages(lines[1:3]))  # a producer retry re-sends events already folded
    assert report.replays_dropped == 2 and report.folded == 0 and store.rows["s1"]["session_events"] == 4
    assert len(pd.read_parquet(tmp_path / "archive")) == 4


def test_late_event_is_quarantined_and_not_archived_but_in_batch_disorder_is_sorted(processor):
    proc, store, _, tmp_path = processor
    rows = [
        {
            "event_id": f"e{i}",
            "event_time": f"2026-11-02T10:0{i}:00Z",
            "user_id": "u1",
            "session_id": "s1",
            "event_type": "page_view",
        }
        for i in range(5)
    ]
    lines = contract_json_lines(contract_events(rows))
    proc.process(0, messages([lines[2], lines[0], lines[1]]))  # out of order within one batch: sorted, folded
    assert store.rows["s1"]["session_events"] == 3 and store.rows["s1"]["session_duration_s"] == 120.0
    late = contract_json_lines(
        contract_events([{**rows[0], "event_id": "e-late", "event_time": "2026-11-02T10:01:30Z"}])
    )[0]
    report = proc.process(1, messages([late, lines[3]]))
    assert report.late == 1 and report.folded == 1
    quarantine = pd.read_parquet(tmp_path / "quarantine")
    assert quarantine["reason"].tolist() == ["late: 30 s older than its session's last processed event"]
    assert "e-late" not in set(pd.read_parquet(tmp_path / "archive")["event_id"])


def test_state_survives_its_json_snapshot_and_idle_sessions_expire(processor):
    proc, _, _, tmp_path = processor
    rows = [
        {
            "event_id": "a",
            "event_time": "2026-11-02T10:00:00Z",
            "user_id": "u1",
            "session_id": "s1",
            "event_type": "product_view",
            "product_id": "p1",
            "category_id": "c1",
        },
        {
            "event_id": "b",
            "event_time": "2026-11-02T12:00:00Z",
            "user_id": "u2",
            "session_id": "s2",
            "event_type": "page_view",
        },
    ]
    proc.process(0, messages(contract_json_lines(contract_events(rows[:1]))))
    state = proc.snapshots.before(1)
    again = StreamState.from_json(state.to_json())
    assert again.sessions["s1"] == state.sessions["s1"] and again.seen == {"s1": {"a"}}
    proc.process(1, messages(contract_json_lines(contract_events(rows[1:]))))  # two hours later in event time
    assert set(proc.snapshots.before(2).sessions) == {"s2"}  # s1 idle beyond the gap plus lateness


def test_a_partition_running_ahead_does_not_expire_sessions_on_a_slower_one(processor):
    proc, store, _, _ = processor
    slow = [
        {
            "event_id": f"s{i}",
            "event_time": f"2026-11-02T10:0{i}:00Z",
            "user_id": "u1",
            "session_id": "slow",
            "event_type": "page_view",
        }
        for i in range(3)
    ]
    fast = [
        {
            "event_id": "f0",
            "event_time": "2026-11-02T14:00:00Z",
            "user_id": "u2",
            "session_id": "fast",
            "event_type": "page_view",
        }
    ]
    lines = contract_json_lines(contract_events(slow[:2] + fast))
    batch = messages(lines)
    batch["partition"] = [0, 0, 1]
    proc.process(0, batch)  # partition 1 is four hours ahead of partition 0
    later = messages(contract_json_lines(contract_events(slow[2:])))
    proc.process(1, later)
    assert store.rows["slow"]["session_events"] == 3  # still one session: its partition's clock says 10:02


def test_state_rebuilt_from_full_snapshots_and_deltas_equals_the_state_in_memory(processor):
    proc, store, _, tmp_path = processor
    events = simulate_traffic(n_users=200, days=1, seed=9).events
    lines = contract_json_lines(events)
    chunks = [lines[i : i + 5] for i in range(0, len(lines), 5)][:60]
    for batch_id, chunk in enumerate(chunks):
        proc.process(batch_id, messages(chunk))
    assert len(chunks) > proc.snapshots.FULL_EVERY  # crosses a full snapshot
    rebuilt = SessionStreamProcessor(
        tmp_path / "state", tmp_path / "a2", tmp_path / "q2", lambda frame: None
    ).snapshots.before(len(chunks))
    assert rebuilt.sessions == proc._state.sessions and rebuilt.seen == proc._state.seen
    assert rebuilt.partition_clock == proc._state.partition_clock
    assert {p.name for p in (tmp_path / "state").iterdir()} >= {"state-0.json", "state-50.json", "delta-59.json"}


def test_the_one_pass_for_valid_batches_gives_what_the_frame_path_gives():
    """parse_valid_events (plain Python) against parse_messages + validate_events (pandas, pandera) on the same
    messages: the same events, dtypes and order, the same duplicates dropped, the same clock per partition; one
    message that is not a valid event sends the batch to the frame path (None)."""
    from propensity.contract import validate_events
    from propensity.streaming.processor import parse_messages, parse_valid_events

    events = simulate_traffic(n_users=80, days=1, seed=12).events
    lines = contract_json_lines(events)
    lines += lines[5:9]  # producer retries: the same ids again
    messages = pd.DataFrame(
        {"value": [line.encode() for line in lines], "partition": [i % 2 for i in range(len(lines))], "offset": 0}
    )
    fast, clocks, duplicates = parse_valid_events(messages)
    raw, malformed = parse_messages(messages)
    slow = validate_events(raw.reset_index(drop=True))
    assert malformed.empty and slow.quarantine.empty
    pd.testing.assert_frame_equal(fast, slow.valid)
    assert duplicates == slow.duplicates_dropped == 4
    times = pd.to_datetime(raw["event_time"], utc=True, format="ISO8601")
    expected = times.groupby(messages["partition"].astype(str).to_numpy()).max().to_dict()
    assert clocks == expected

    for bad in (b"{not json", json.dumps({**json.loads(lines[0]), "price": -1}).encode(), b'{"event_id": "e"}'):
        broken = pd.concat([messages, pd.DataFrame({"value": [bad], "partition": [0], "offset": [0]})])
        assert parse_valid_events(broken) is None


def test_a_failed_query_is_started_again_with_backoff_and_a_stop_ends_the_loop(monkeypatch):
    """The job's supervisor (propensity.streaming.job.supervise): a query that fails (the broker gone past Spark's own
    retries) is started again from its checkpoint after a growing pause; a stop request ends it with 0."""
    import threading

    import propensity.streaming.job as job

    class Query:
        def __init__(self, fails: bool):
            self.fails, self.stopped = fails, False

        @property
        def isActive(self):
            return not (self.fails or self.stopped)

        def awaitTermination(self, timeout):
            time.sleep(min(timeout, 0.01))

        def exception(self):
            return RuntimeError("Timeout of 60000ms expired before the position for partition storefront.events-0")

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(job, "RESTART_FIRST_S", 0.01)
    stopping, started, pauses = threading.Event(), [], []
    real_wait = stopping.wait

    def wait(timeout=None):
        pauses.append(timeout)
        return real_wait(0)

    stopping.wait = wait

    def start():
        started.append(Query(fails=len(started) < 3))
        if len(started) == 4:
            stopping.set()  # an operator's SIGTERM while the fourth, healthy, query runs
        return started[-1]

    assert job.supervise(start, stopping) == 0
    assert len(started) == 4 and started[-1].stopped
    assert pauses == [0.01, 0.02, 0.04]  # three failures, each pause twice the one before
