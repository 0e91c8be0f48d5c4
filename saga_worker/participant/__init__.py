"""The participant runtime: exactly-once effects for Redis-script and Python-handler participants."""
