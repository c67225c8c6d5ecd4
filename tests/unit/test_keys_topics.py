"""Topic names and Redis keys come from one place and keep tenants apart."""

from __future__ import annotations

import pytest

from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys


def test_topic_names_are_versioned_and_prefixable() -> None:
    assert Topics().inbound == "sb.inbound.v1"
    assert Topics("t1.").dlq == "t1.sb.dlq.v1"
    specs = {s.name: s for s in Topics().specs()}
    assert specs["sb.presence.v1"].compacted
    assert specs["sb.presence.v1"].configs()["cleanup.policy"] == "compact"
    assert all(s.partitions == 2 for s in Topics().specs(2))


def test_keys_carry_the_tenant_as_a_hash_tag() -> None:
    keys = Keys("sb")
    assert keys.agent("shop-a", "a1") == "sb:{shop-a}:agent:a1"
    assert keys.queue("shop-a", "售后") == "sb:{shop-a}:queue:售后"
    assert keys.agent("shop-a", "a1") != keys.agent("shop-b", "a1")
    assert keys.tenant_pattern("shop-a") == "sb:{shop-a}:*"


@pytest.mark.parametrize("tenant", ["", "a}b", "{a"])
def test_keys_refuse_tenants_that_would_break_the_hash_tag(tenant: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        Keys().conversation(tenant, "c1")
