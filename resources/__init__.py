"""Typed Dagster resources, and the one switch that picks them per profile (PROPENSITY_PROFILE)."""

from resources.feast import FeastResource
from resources.lake import LakeResource
from resources.profiles import PROFILES, build_resources, current_profile
from resources.spark import spark_resource

__all__ = ["FeastResource", "LakeResource", "PROFILES", "build_resources", "current_profile", "spark_resource"]
