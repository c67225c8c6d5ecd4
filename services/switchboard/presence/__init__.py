"""Presence: who is available. Agent status, sessions, heartbeats, skills and capacity, and surge controls."""
