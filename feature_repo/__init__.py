"""The Feast feature repository. Imported as a package by the platform; `feast apply` reads `repo.py` only
(see .feastignore), which re-exports every object, so each object exists exactly once."""

from feature_repo.repo import FEAST_OBJECTS

__all__ = ["FEAST_OBJECTS"]
