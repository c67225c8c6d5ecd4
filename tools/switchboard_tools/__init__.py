"""switchboard-tools: the local stack, the load generator and the benchmarks; not part of the service image."""
