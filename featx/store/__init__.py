"""The Parquet feature store: the contract between extraction and everything downstream.

Modules, lowest first (each imports only those above it):
    format      file names, schemas, metadata keys            location   local folders and pyarrow URIs
    lease       one writer per store (or shard) at a time     manifest   the config and manifest as written
    check       parts against manifest; repairs               reader     rows, sequences, `featx info`
    writer      StoreWriter: whole videos, committed parts    handle     Store / open_store, for users

A flush commits by renaming the finished part into place: that rename is the one moment its videos become
visible. The part's own metadata repeats its manifest rows, so a fragment lost to a crash between the two
renames is rebuilt from the part on the next open. Plain Parquet I/O only: no torch, no decoding.
"""

from featx.store.check import DAMAGED_DIR, check_store, verify_store
from featx.store.format import CONFIG_KEY, MANIFEST_DIR, MANIFEST_SCHEMA, PART_GLOB, feature_schema, video_table
from featx.store.handle import Store, open_store
from featx.store.location import store_path
from featx.store.manifest import latest_manifest, ok_video_ids, read_config, read_manifest
from featx.store.reader import load_features, load_sequences, store_info, videos_to_do
from featx.store.writer import StoreWriter, refuse_output_in_store

__all__ = [
    "CONFIG_KEY", "DAMAGED_DIR", "MANIFEST_DIR", "MANIFEST_SCHEMA", "PART_GLOB", "Store", "StoreWriter",
    "check_store", "feature_schema", "latest_manifest", "load_features", "load_sequences", "ok_video_ids",
    "open_store", "read_config", "read_manifest", "refuse_output_in_store", "store_info", "store_path",
    "verify_store", "video_table", "videos_to_do",
]
