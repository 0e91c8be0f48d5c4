"""Sagas built on saga_worker's public API alone, to read and to copy; tests run them."""
