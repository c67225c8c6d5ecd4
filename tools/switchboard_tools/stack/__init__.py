"""The local stack: a real Kafka broker (KRaft) and Redis server as plain processes, and the services on top."""
