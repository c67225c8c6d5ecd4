"""The router's script requests as the Lua side decodes them (a real Redis): what Python encodes is what Lua reads."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from tests.unit.test_router_contract import REQUESTS


@pytest.mark.broker
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
async def test_requests_reach_the_lua_side_as_encoded(redis: Redis, request_: object) -> None:
    """What the scripts decode (cjson) is what Python encoded: a Lua echo gives back the same document."""
    echo = "return cjson.encode(cjson.decode(ARGV[1]))"
    encoded = request_.encode()  # type: ignore[attr-defined]
    back = await redis.eval(echo, 0, encoded)  # type: ignore[misc]
    assert _normal(json.loads(back)) == _normal(json.loads(encoded))


def _normal(value: object) -> object:
    # cjson encodes an empty table as {} and numbers with 14 significant digits.
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()} if value else []
    if isinstance(value, list):
        return [_normal(v) for v in value] if value else []
    if isinstance(value, float):
        return float(f"{value:.14g}")
    if isinstance(value, int) and not isinstance(value, bool):
        return float(f"{value:.14g}")
    return value
