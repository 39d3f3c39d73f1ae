"""Adapters: thin modules that each talk to one thing (SQL, Redis, rule files, the environment, logs)."""
