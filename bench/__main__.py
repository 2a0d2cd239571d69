"""Run every benchmark, each as `python -m bench.<name>` in its own process so memory figures never mix.

`python -m bench [--only a,b] [args...]`: extra arguments are forwarded to every benchmark. Exits non-zero if any
benchmark fails (the others still run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import RUNNER_ENV
from propensity.paths import PROJECT_ROOT

# In run order.
BENCHMARKS: tuple[str, ...] = (
    "batch_features",
    "serving_footprint",
    "serving_latency",
    "model_quality",
    "streaming_freshness",
    "monitoring",
    "uplift",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the benchmarks; other arguments are forwarded."
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args, forwarded = parser.parse_known_args(argv)
    selected = BENCHMARKS
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}: choose from {list(BENCHMARKS)}")
        selected = tuple(name for name in BENCHMARKS if name in wanted)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    given = sys.argv[1:] if argv is None else argv
    env[RUNNER_ENV] = " ".join(["python -m bench", *given]) if given else "make bench"
    failed: list[str] = []
    for name in selected:
        print(f"=== bench.{name}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}", *forwarded], cwd=PROJECT_ROOT, env=env).returncode
        print(
            f"=== bench.{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
            f"in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
