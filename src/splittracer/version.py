"""The package's version, in a module of its own so every layer can read it without the public API."""

__version__ = "0.1.0"
