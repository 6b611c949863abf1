"""featx's version: recorded in every store config and run, printed by `featx --version`."""

__version__ = "0.1.0"  # keep equal to pyproject.toml's [project] version
