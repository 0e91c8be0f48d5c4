"""Throughput, latency and memory of saga-worker against a pass-through floor and a
naive orchestrator, on the local Kafka and Redis (`make bench`, issue 8)."""
