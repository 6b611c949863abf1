"""featx: extract video features once into a Parquet store, train light temporal heads many times.

The Python interface (docs/python.md): `featx.extract(sources, out, **options)` -> summary,
`featx.embed(video, **options)` -> (times, features) in memory, `featx.open_store(path)` -> Store.

Only cheap imports here (the decoding workers import this package): the store readers load pandas and
pyarrow on first use, and torch and timm load when a backbone is built.
"""

from featx.errors import FeatxError
from featx.version import __version__

_STORE_API = ("Store", "open_store", "load_features", "load_sequences", "read_manifest", "store_info")
_RUN_API = ("extract", "embed")
__all__ = ["FeatxError", "__version__", *_RUN_API, *_STORE_API]


def __getattr__(name: str):
    if name in _STORE_API:
        from featx import store

        return getattr(store, name)
    if name in _RUN_API:
        from featx import api

        return getattr(api, name)
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
