"""The layers import one way only (docs/ARCHITECTURE.md). Every import statement is checked, function-local ones
included, in every module of every package, by reading the source: an import hidden in a function is still a
dependency, it only fails later."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from propensity.settings import PROJECT_ROOT

OURS = (
    "propensity",
    "feature_repo",
    "serving",
    "resources",
    "sensors",
    "propensity_assets",
    "tests",
    "bench",
    "scripts",
)
DAGSTER = ("dagster", "dagster_aws", "dagster_pyspark", "dagster_pandera", "dagster_webserver")


@dataclass(frozen=True)
class Layer:
    name: str
    may_import: tuple[str, ...]  # our packages (or subpackages) this layer may use
    never: tuple[str, ...] = ()  # third-party packages it must not use


LAYERS = {
    "propensity": Layer("core", ("propensity",), never=DAGSTER),
    "feature_repo": Layer("Feast repository", ("feature_repo", "propensity"), never=DAGSTER),
    "serving": Layer("data plane", ("serving", "propensity"), never=(*DAGSTER, "pyspark", "sklearn", "moto", "pytest")),
    "serving.control": Layer("control plane", ("serving", "propensity"), never=(*DAGSTER, "pyspark", "pytest")),
    "resources": Layer("resources", ("resources", "propensity", "serving")),
    "sensors": Layer("sensors", ("sensors", "resources", "propensity", "serving.control", "serving")),
    "propensity_assets": Layer(
        "assets", ("propensity_assets", "resources", "propensity", "feature_repo", "serving.control", "serving")
    ),
    "propensity_assets.definitions": Layer(
        "definitions", ("propensity_assets", "resources", "sensors", "propensity", "feature_repo", "serving")
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_of(module: str) -> Layer:
    """The most specific layer a module belongs to (serving.control before serving)."""
    owner = max((key for key in LAYERS if module == key or module.startswith(key + ".")), key=len)
    return LAYERS[owner]


def imports_of(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the source, at any depth, relative ones resolved."""
    found = []
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
            else:
                found.append((node.lineno, "<dynamic import>"))
    return found


def violations(source: str, module: str) -> list[str]:
    layer = _layer_of(module)
    problems = []
    for line, imported in imports_of(source, module):
        top = imported.split(".")[0]
        if imported == "<dynamic import>":
            problems.append(f"{module}:{line}: an import by a computed name cannot be checked")
        elif top in OURS:
            allowed = any(imported == a or imported.startswith(a + ".") for a in layer.may_import)
            if not allowed or _forbidden_subpackage(layer, imported):
                problems.append(f"{module}:{line}: the {layer.name} may not import {imported}")
        elif top in layer.never:
            problems.append(f"{module}:{line}: the {layer.name} may not import {imported}")
    return problems


def _forbidden_subpackage(layer: Layer, imported: str) -> bool:
    """The data plane may import `serving` but not its control plane."""
    return layer.name == "data plane" and (imported == "serving.control" or imported.startswith("serving.control."))


def _modules() -> list[Path]:
    roots = [PROJECT_ROOT / package for package in LAYERS if "." not in package]
    return sorted(path for root in roots for path in root.rglob("*.py"))


def test_every_layer_imports_only_what_it_may():
    problems = [
        problem for path in _modules() for problem in violations(path.read_text(encoding="utf-8"), _module_name(path))
    ]
    assert problems == []


def test_every_package_is_covered():
    """A new top-level package of ours must get a rule before it can hide from this test."""
    packages = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py")}
    assert packages - {"tests", "bench"} == {key for key in LAYERS if "." not in key}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("propensity.features.x", "def f():\n    import dagster\n", "may not import dagster"),
        ("propensity.streaming.job", "from resources.spark import spark_config\n", "may not import resources.spark"),
        ("propensity.streaming.replayer", "def f():\n    from serving.client import C\n", "serving.client"),
        ("serving.server", "def f():\n    from resources.profiles import x\n", "resources.profiles"),
        ("serving.router", "from serving.control.endpoint import start_server\n", "serving.control.endpoint"),
        ("serving.scorer", "import pyspark.sql\n", "may not import pyspark.sql"),
        ("serving.control.endpoint", "import dagster as dg\n", "may not import dagster"),
        ("resources.kafka", "from propensity_assets.streaming import x\n", "propensity_assets.streaming"),
        ("propensity_assets.models", "from sensors.drift import x\n", "may not import sensors.drift"),
        ("propensity.sources", "import importlib\nimportlib.import_module(name)\n", "computed name"),
        ("serving.online_features", "from .scorer import Scorer\n", None),
        ("propensity_assets.definitions", "from sensors import x\n", None),
    ],
)
def test_the_rule_catches_what_it_should(module, source, expected):
    found = violations(source, module)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
