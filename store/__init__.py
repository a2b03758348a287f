"""The feature store: one versioned HDF5 schema (``store.schema``), sharded atomic writers,
a vectorised reader, integrity checks."""
from __future__ import annotations

from .drop import drop_videos
from .errors import StoreError
from .index import read_index, rebuild_index
from .info import store_info
from .lock import StoreLock
from .reader import FeatureStore
from .schema import SCHEMA_VERSION
from .verify import VerifyResult, verify_store
from .writer import ShardWriter

__all__ = [
    "SCHEMA_VERSION", "ShardWriter", "rebuild_index", "read_index", "FeatureStore", "StoreError",
    "StoreLock", "drop_videos", "verify_store", "VerifyResult", "store_info",
]
