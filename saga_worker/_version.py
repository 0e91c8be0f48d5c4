"""The version of saga-worker, in one place: the package metadata (pyproject.toml reads
it), `saga_worker.__version__`, `saga-worker --version` and `saga_worker_build_info`."""

__version__ = "0.1.0"
