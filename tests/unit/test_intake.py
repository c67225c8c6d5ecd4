"""Message ids shared by every channel adapter (masking: test_pii.py; language detection: test_language.py)."""

from __future__ import annotations

from switchboard.intake.ids import message_id


def test_message_ids_are_stable_per_provider_message_and_tenant() -> None:
    assert message_id("shop-a", "CHANNEL_CHAT", "p1") == message_id("shop-a", "CHANNEL_CHAT", "p1")
    assert message_id("shop-a", "CHANNEL_CHAT", "p1") != message_id("shop-b", "CHANNEL_CHAT", "p1")
