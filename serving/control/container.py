"""The scoring container's layout, read from the Dockerfile itself: the packages it copies into /opt/program, less
what it removes. The tests and the footprint benchmark lay the code out the same way, so "what the container runs"
has one definition (the Dockerfile), and a change there is what they exercise."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from propensity.settings import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def container_packages(dockerfile: Path = DOCKERFILE) -> tuple[list[str], list[str]]:
    """(packages copied, paths removed afterwards) by the Dockerfile's `COPY <pkg> ./<pkg>` and `RUN rm -rf` lines."""
    text = dockerfile.read_text()
    copied = re.findall(r"^COPY (\w+) \./\1$", text, flags=re.M)
    removed = re.findall(r"^RUN rm -rf (\S+)$", text, flags=re.M)
    if not copied:
        raise ValueError(f"{dockerfile}: no `COPY <package> ./<package>` lines")
    return copied, removed


def container_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """An environment without PYTHONPATH and the like: a process laid out as the container must not find the
    platform's packages another way."""
    return {name: value for name, value in environ.items() if not name.startswith(("PYTHON", "VIRTUAL_ENV"))}


def container_tree(target: Path, dockerfile: Path = DOCKERFILE) -> Path:
    """The code as the image has it in /opt/program, under `target` (which must not exist yet)."""
    copied, removed = container_packages(dockerfile)
    for package in copied:
        shutil.copytree(PROJECT_ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in removed:
        shutil.rmtree(target / path)
    return target
