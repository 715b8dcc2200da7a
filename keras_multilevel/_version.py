"""The version of keras-multilevel (setup.cfg's `version`), importable without the rest of the package."""

__version__ = "0.1.0"
