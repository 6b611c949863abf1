"""featx: extract video features once into a Parquet store, train light temporal heads many times.

Only cheap imports here; torch and timm load when a backbone is built.
"""

__version__ = "0.1.0"

from featx.errors import FeatxError  # noqa: E402
from featx.store import load_features, load_sequences, read_manifest, store_info  # noqa: E402

__all__ = ["FeatxError", "load_features", "load_sequences", "read_manifest", "store_info", "__version__"]
