"""switchboard: routes e-commerce customer-service conversations from every channel to the right human agent."""

__version__ = "0.1.0"
