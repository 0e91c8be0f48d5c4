"""The participant runtime: exactly-once effects in Redis for script participants, and
stored replies with a stable idempotency key per step for Python-handler participants."""
