"""The `saga-worker` command line: worker commands and operator commands for any app."""

from saga_worker.cli.commands import main

__all__ = ["main"]
