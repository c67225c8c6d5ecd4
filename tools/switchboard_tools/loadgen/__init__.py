"""The big-sale load generator: simulated customers and agents over the real entry points, and a report."""
