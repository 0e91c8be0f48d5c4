"""Operator commands of the `saga-worker` CLI: show, list, retry, abort, stats, dlq."""

from __future__ import annotations
