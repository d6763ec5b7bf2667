"""Kernels: Kconfig requirements and module paths."""
