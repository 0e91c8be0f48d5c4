"""Local Kafka and Redis for development, tests, the demo and the benchmark."""
