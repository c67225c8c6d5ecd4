"""The chat channel adapter: customers' widget websockets and platforms' signed webhooks in, agents' replies out."""
