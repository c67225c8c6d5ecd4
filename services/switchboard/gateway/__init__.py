"""The agent desktop gateway: one websocket per agent desktop, carrying offers and conversations in, commands out.

See docs/desktop-protocol.md for the protocol every desktop (ours or a third party's) speaks.
"""
