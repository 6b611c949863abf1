"""Deterministic shards: a video belongs to shard hash(video_id) mod N, whatever machine or order runs it.

Shards are independent: each writes its own parts and manifest fragments into the same store (part names
carry a unique run id), and the store is the union of what they wrote.
"""

from __future__ import annotations

import hashlib

from featx.errors import FeatxError


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise FeatxError(f"--shard {text!r}: expected i/N, e.g. 0/4 for the first of four shards")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise FeatxError(f"--shard {text!r}: i must be in 0..N-1")
    return i, n


def shard_of(video_id: str, count: int) -> int:
    """The shard of a video: a stable hash (sha1 of its id; Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.sha1(video_id.encode()).digest()[:8], "big") % count


def select_shard(videos: list, index: int, count: int) -> list:
    """The videos (anything with a .video_id) of shard `index` of `count`."""
    return [v for v in videos if shard_of(v.video_id, count) == index]
