"""Sticktionary: the command line and the pieces that compose the layers (demo, benchmarks)."""

__version__ = "0.1.0"
