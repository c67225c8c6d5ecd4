"""The runtime every switchboard service shares: settings, Kafka, Redis, logs, metrics, health, shutdown."""
