"""reconcile: declarative NixOS labs from one TOML manifest."""

__version__ = "0.1.0"
