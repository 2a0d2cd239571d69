"""A console that shows only the project's own lines: everything else a run prints goes to a log file.

Libraries print to the process's file descriptors directly (Python warnings, Feast's progress, Dagster's banner,
the JVM's log4j lines from Spark), so redirecting `sys.stdout` is not enough: descriptors 1 and 2 themselves point
at the log while the run lasts, and `say` writes to a duplicate of the original console.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def quiet_console(log_path: Path) -> Iterator[Callable[[str], None]]:
    """Within the block, fd 1 and fd 2 (and Python's warnings and logging) go to `log_path`; yields `say(line)`,
    which prints to the console the process started with."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    saved = (os.dup(1), os.dup(2))
    log = open(log_path, "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    logging.captureWarnings(True)  # warnings become log records in the file, each once per place
    saved_filters = warnings.filters[:]
    warnings.simplefilter("default")
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)

    def say(line: str) -> None:
        console.write(line + "\n")

    try:
        yield say
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        root.removeHandler(handler)
        logging.captureWarnings(False)
        warnings.filters[:] = saved_filters
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()
        console.close()
