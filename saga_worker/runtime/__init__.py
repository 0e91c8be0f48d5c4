"""The runtime around the engine: the worker shell, the Kafka loop, the Redis store,
the publisher and outbox, timers, the sweeper, dead letters and worker processes."""
