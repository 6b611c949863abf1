"""Stage 2: light temporal heads trained on featx stores.

The Python interface (docs/python.md): `seqmodels.train(store, out, labels=... | annotations=..., head=...)`
-> TrainedRun, and `seqmodels.load_run(path)`, whose `.evaluate(store, ...)` and `.predict(store)` give
metrics and predictions. Imports stay cheap until one is called.
"""

__all__ = ["load_run", "train"]


def __getattr__(name: str):
    if name in __all__:
        from seqmodels import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqmodels' has no attribute {name!r}")
