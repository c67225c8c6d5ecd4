"""The consumer group timings and HTTP deadlines are settings, checked when read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.runtime.http_timeouts import TimedHttpProtocol, timed_http_protocol
from switchboard.runtime.settings import ServiceSettings


def test_a_heartbeat_longer_than_a_third_of_the_session_is_refused_with_both_names() -> None:
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(kafka_session_timeout_ms=1500, kafka_heartbeat_interval_ms=600)
    assert "SB_KAFKA_HEARTBEAT_INTERVAL_MS" in str(refused.value)
    assert "SB_KAFKA_SESSION_TIMEOUT_MS" in str(refused.value)


def test_a_session_below_the_brokers_floor_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(kafka_session_timeout_ms=500, kafka_heartbeat_interval_ms=100)


def test_the_defaults_fail_over_within_3_s_and_static_membership_is_off() -> None:
    settings = ServiceSettings()
    assert settings.kafka_session_timeout_ms + settings.kafka_heartbeat_interval_ms < 3000
    assert settings.kafka_group_instance_id == ""


def test_each_service_gets_a_protocol_with_its_own_deadlines() -> None:
    chat = timed_http_protocol("chat", 3.0, 7.0)
    assert issubclass(chat, TimedHttpProtocol)
    assert (chat.service, chat.header_timeout_s, chat.body_timeout_s) == ("chat", 3.0, 7.0)
    assert TimedHttpProtocol.header_timeout_s == 10.0  # the base class is not changed
