"""The ``merge`` source: one source over several configured ones, as OHIF's MergeDataSource."""

from .config import MergeConfig
from .results import AllMembersFailedError, MergedMapping, MergedResults
from .source import TAG, MergeSource, create_merge_api

__all__ = [
    "TAG",
    "AllMembersFailedError",
    "MergeConfig",
    "MergeSource",
    "MergedMapping",
    "MergedResults",
    "create_merge_api",
]
