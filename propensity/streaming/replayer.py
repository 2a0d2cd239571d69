"""The storefront replayer: contract-v1 events as JSON to the `storefront.events` topic (keyed by session_id, so one
session's events stay in order on one partition), or as JSON-lines files into the file source's inbox.

    python -m propensity.streaming.replayer --dataset simulator --users 500 --days 1 --speedup 600
    python -m propensity.streaming.replayer --dataset taobao --to file --asap
    python -m propensity.streaming.replayer --dataset simulator --asap --score-url http://127.0.0.1:8080 --score-every 50

Events go out in event-time order; `--speedup N` keeps their spacing divided by N, `--asap` sends as fast as the
broker takes them. With `--score-url` the storefront also asks the endpoint for a propensity every N events, at
that event's decision point, through the storefront client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from propensity.sources.contract_files import contract_json_lines

CREATE_TOPIC_TIMEOUT_S = 30.0
TOPIC_PARTITIONS = 2


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


def ensure_topic(bootstrap: str, topic: str, partitions: int = TOPIC_PARTITIONS, options: dict | None = None) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(options or {})})
    existing = admin.list_topics(timeout=CREATE_TOPIC_TIMEOUT_S).topics
    if topic in existing:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(timeout=CREATE_TOPIC_TIMEOUT_S)
    except KafkaException as error:
        if "TOPIC_ALREADY_EXISTS" not in str(error):
            raise


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


def replay_to_kafka(
    events: pd.DataFrame,
    bootstrap: str,
    topic: str,
    speedup: float | None,
    progress: bool = True,
    score_every: int = 0,
    client=None,
    options: dict | None = None,
) -> int:
    from confluent_kafka import Producer
    from tqdm import tqdm

    ensure_topic(bootstrap, topic, options=options)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.timeout.ms": 30000,
            **(options or {}),
        }
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
        if score_every and client is not None and i % score_every == 0:
            client.score(session_id, users[i])
    remaining = producer.flush(60.0)
    if remaining or failures:
        raise RuntimeError(f"{remaining} messages undelivered after 60 s, {len(failures)} failed: {failures[:3]}")
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


def main(argv: list[str] | None = None) -> int:
    from propensity.streaming.job import bootstrap_servers, inbox_dir, kafka_options, topic

    parser = argparse.ArgumentParser(
        prog="python -m propensity.streaming.replayer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", default="simulator", choices=["simulator", "taobao", "diginetica"])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--to", choices=["kafka", "file"], default="kafka")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speedup", type=float, default=60.0, help="event-time spacing divided by this (default 60)")
    pace.add_argument("--asap", action="store_true", help="as fast as possible")
    parser.add_argument("--score-url", help="also score through the endpoint at this URL")
    parser.add_argument("--score-every", type=int, default=20)
    args = parser.parse_args(argv)

    events = load_events(args.dataset, args.users, args.days, args.seed)
    speedup = None if args.asap else args.speedup
    started = time.monotonic()
    if args.to == "kafka":
        client = None
        if args.score_url:
            from serving.client import PropensityClient

            client = PropensityClient.local(args.score_url)
        sent = replay_to_kafka(
            events,
            bootstrap_servers(),
            topic(),
            speedup,
            score_every=args.score_every if client else 0,
            client=client,
            options=kafka_options(),
        )
    else:
        sent = replay_to_files(events, inbox_dir(), speedup)
    print(f"replayed {sent:,} {args.dataset} events to {args.to} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
