"""`make replay`: storefront traffic into the stream, optionally scoring through an endpoint as it goes.

    python scripts/replay.py --dataset simulator --users 500 --days 1 --speedup 600
    python scripts/replay.py --dataset taobao --to file --asap
    python scripts/replay.py --dataset simulator --asap --score-url http://127.0.0.1:8080 --score-every 50

Events go out in event-time order; `--speedup N` keeps their spacing divided by N, `--asap` sends as fast as the
broker takes them. With `--score-url` the storefront also asks the endpoint for a propensity every N events, at
that event's decision point, through the storefront client. This script wires the core's replayer to the serving
client; neither knows the other.
"""

from __future__ import annotations

import argparse
import sys
import time

from propensity.settings import settings
from propensity.streaming.job import inbox_dir
from propensity.streaming.replayer import load_events, replay_to_files, replay_to_kafka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/replay.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="simulator", choices=["simulator", "taobao", "diginetica"])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--to", choices=["kafka", "file"], default="kafka")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speedup", type=float, default=60.0, help="event-time spacing divided by this (default 60)")
    pace.add_argument("--asap", action="store_true", help="as fast as possible")
    parser.add_argument("--score-url", help="also score through the endpoint at this URL (Kafka only)")
    parser.add_argument("--score-every", type=int, default=20)
    args = parser.parse_args(argv)

    events = load_events(args.dataset, args.users, args.days, args.seed)
    speedup = None if args.asap else args.speedup
    started = time.monotonic()
    if args.to == "kafka":
        score = None
        if args.score_url:
            from serving.client import PropensityClient

            score = PropensityClient.local(args.score_url).score
        sent = replay_to_kafka(
            events, settings().kafka, speedup, score_every=args.score_every if score else 0, score=score
        )
    else:
        sent = replay_to_files(events, inbox_dir(), speedup)
    print(f"replayed {sent:,} {args.dataset} events to {args.to} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
