"""Shared state: the Redis key formats, agents' presence state, the roster and the desk outbox.

Services meet here instead of importing each other: the router, presence, the gateway and the adapters each use
these modules, and none of them imports another service's package.
"""
