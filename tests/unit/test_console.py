"""The quiet console: a run's own lines on the console, everything libraries print (down to raw file descriptors,
where the JVM writes) in the log file."""

import subprocess
import sys

from propensity.settings import PROJECT_ROOT

NOISY_RUN = """
import logging, os, subprocess, sys, warnings
from pathlib import Path
from propensity.console import quiet_console

with quiet_console(Path(sys.argv[1])) as say:
    say("[run] step one")
    warnings.warn("a library deprecation", DeprecationWarning)
    print("a library's print")
    os.write(2, b"a JVM writing to fd 2\\n")
    subprocess.run(["sh", "-c", "echo a child process on fd 1"])
    logging.getLogger("feast").warning("a library log record")
    say("[run] done")
print("after the block, the console again")
"""


def test_only_the_runs_own_lines_reach_the_console(tmp_path):
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", NOISY_RUN, str(log)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[run] step one", "[run] done", "after the block, the console again"]
    assert done.stderr == ""
    logged = log.read_text()
    for noise in ("a library deprecation", "a library's print", "a JVM writing", "a child process", "a library log"):
        assert noise in logged, noise
