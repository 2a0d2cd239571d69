"""The storefront replayer: contract-v1 events as JSON to the `storefront.events` topic (keyed by session_id, so one
session's events stay in order on one partition), or as JSON-lines files into the file source's inbox.

Events go out in event-time order, their spacing divided by a speed-up (or as fast as the broker takes them). A
storefront also asks for a score as it goes: `replay_to_kafka` calls `score(session_id, user_id)` every N events, so
the caller decides how (`scripts/replay.py` scores through the storefront client; the core knows no endpoint).
The command line is `scripts/replay.py` (`make replay`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from propensity.settings import KafkaSettings
from propensity.sources.contract_files import contract_json_lines
from propensity.streaming.kafka import client_config, ensure_topic

Score = Callable[[str, str], object]  # (session_id, user_id): the storefront asking for a propensity


def load_events(dataset: str, users: int, days: int, seed: int, start_date: str | None = None) -> pd.DataFrame:
    """Contract events of a dataset in event-time order (the sources' own adapters, validated, with session ids);
    `users`, `days`, `seed` and `start_date` (default: the simulator's) shape the simulator's traffic."""
    from propensity.contract import validate_events

    if dataset == "simulator":
        from propensity.sources.simulator import simulate_traffic

        shape = {} if start_date is None else {"start_date": start_date}
        events = simulate_traffic(n_users=users, days=days, seed=seed, **shape).events
    elif dataset == "taobao":
        from propensity.sources.taobao import load_taobao

        events = load_taobao().events
    elif dataset == "diginetica":
        from propensity.sources.diginetica import load_diginetica

        events = load_diginetica().events
    else:
        raise SystemExit(f"unknown dataset {dataset!r}: simulator, taobao or diginetica")
    from propensity.session_ids import assign_session_ids

    valid = assign_session_ids(validate_events(events).valid)  # the storefront knows its sessions
    return valid.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)


def paced(events: pd.DataFrame, speedup: float | None) -> Iterator[tuple[int, str, str]]:
    """(row, session_id, JSON) in order, sleeping so event-time gaps pass `speedup` times faster (None: no wait)."""
    lines = contract_json_lines(events)
    times = events["event_time"]
    start_event, start_wall = times.iloc[0] if len(events) else None, time.monotonic()
    for i, (session_id, line) in enumerate(zip(events["session_id"], lines)):
        if speedup:
            due = start_wall + (times.iloc[i] - start_event).total_seconds() / speedup
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield i, session_id, line


DELIVERY_TIMEOUT_S = 60.0


def replay_to_kafka(
    events: pd.DataFrame,
    kafka: KafkaSettings,
    speedup: float | None,
    progress: bool = True,
    score_every: int = 0,
    score: Score | None = None,
) -> int:
    """Every event to the topic, keyed by session; `score` is called every `score_every` events. Returns the count."""
    from confluent_kafka import Producer
    from tqdm import tqdm

    ensure_topic(kafka)
    topic = kafka.topic
    producer = Producer(
        client_config(
            kafka,
            **{
                "linger.ms": 5,
                "enable.idempotence": True,
                "message.timeout.ms": 30_000,  # per message; the final flush waits DELIVERY_TIMEOUT_S for them all
            },
        )
    )
    failures: list[str] = []

    def delivered(error, message):
        if error is not None:
            failures.append(str(error))

    users = events["user_id"].tolist()
    for i, session_id, line in tqdm(paced(events, speedup), total=len(events), disable=not progress, unit="ev"):
        while True:
            try:
                producer.produce(topic, key=session_id.encode(), value=line.encode(), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let the broker catch up
                producer.poll(0.05)
        producer.poll(0)
        if score_every and score is not None and i % score_every == 0:
            score(session_id, users[i])
    remaining = producer.flush(DELIVERY_TIMEOUT_S)
    if remaining or failures:
        raise RuntimeError(
            f"{remaining} messages undelivered after {DELIVERY_TIMEOUT_S:.0f} s, {len(failures)} failed: {failures[:3]}"
        )
    return len(events)


def replay_to_files(events: pd.DataFrame, inbox: Path, speedup: float | None, per_file: int = 500) -> int:
    """The file source's wire format: JSON-lines files, each written whole (temporary name, then renamed)."""
    inbox.mkdir(parents=True, exist_ok=True)
    stamp = time.time_ns()
    chunk: list[str] = []
    part = 0

    def flush():
        nonlocal chunk, part
        if chunk:
            tmp = inbox / f".replay-{stamp}-{part:06d}.tmp"
            tmp.write_text("\n".join(chunk) + "\n")
            os.replace(tmp, inbox / f"replay-{stamp}-{part:06d}.jsonl")
            chunk, part = [], part + 1

    for _, _, line in paced(events, speedup):
        chunk.append(line)
        if len(chunk) >= per_file:
            flush()
    flush()
    return len(events)
