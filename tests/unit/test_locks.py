"""The two locks agree: the scoring container's pins are a subset of the platform's, at the same versions, and hold
nothing of the platform that serving must not need."""

from propensity.settings import PROJECT_ROOT

PLATFORM_ONLY = ("dagster", "pyspark", "scikit-learn", "pandera", "duckdb", "ibis-framework", "moto", "pytest", "boto3")


def _pins(name: str) -> dict[str, str]:
    lines = (PROJECT_ROOT / name).read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith(("#", " "))]
    return {package.lower(): version for package, version in pins}


def test_the_serving_lock_is_the_platform_lock_restricted_to_what_serving_needs():
    full, serving = _pins("requirements.lock"), _pins("requirements-serving.lock")
    assert {p: v for p, v in serving.items() if full.get(p) != v} == {}
    assert sorted(p for p in serving if p in PLATFORM_ONLY or p.startswith("dagster")) == []
    assert {"feast", "lightgbm", "uvicorn", "redis"} <= set(serving)
