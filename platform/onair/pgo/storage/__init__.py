"""Profile storage: one interface (:class:`ProfileStore`), three backends, one retention rule."""

from onair.pgo.storage.base import (
    InvalidAppName,
    ProfileNotFound,
    ProfileRef,
    ProfileStore,
    RetentionPolicy,
    check_app,
    profile_name,
    to_ms,
)
from onair.pgo.storage.directory import DirectoryStore
from onair.pgo.storage.s3 import S3Store
from onair.pgo.storage.valkey import ValkeyStore

__all__ = [
    "DirectoryStore",
    "InvalidAppName",
    "ProfileNotFound",
    "ProfileRef",
    "ProfileStore",
    "RetentionPolicy",
    "S3Store",
    "ValkeyStore",
    "check_app",
    "profile_name",
    "to_ms",
]
