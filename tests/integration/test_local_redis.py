"""LocalRedis persists as the manifests do (AOF, fsync every second unless SB_REDIS_APPENDFSYNC says otherwise), and
kill()/restart()/restart(empty=True) behave as the fault suite and the state-rebuild tests rely on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from switchboard_tools.stack.redis import LocalRedis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis only this test uses, so it may kill it."""
    local = LocalRedis(tmp_path / "redis")
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _client(server: LocalRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_runs_with_an_append_only_file_fsynced_every_second(server: LocalRedis) -> None:
    config = _client(server).config_get("append*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert _client(server).config_get("save")["save"] == ""


def test_a_write_older_than_a_second_survives_sigkill_and_restart(server: LocalRedis) -> None:
    port, before = server.port, server.proc.pid if server.proc else 0
    _client(server).set("k", "v")
    time.sleep(1.5)  # everysec: fsynced by now
    server.kill()
    assert server.proc is None
    server.restart()
    assert server.port == port
    assert server.proc is not None and server.proc.pid != before
    assert _client(server).get("k") == "v"


def test_restart_empty_comes_back_with_nothing_on_the_same_port(server: LocalRedis) -> None:
    port = server.port
    _client(server).set("k", "v")
    time.sleep(1.5)
    server.restart(empty=True)  # kills the running server first
    assert server.port == port
    assert _client(server).dbsize() == 0
    assert (server.data_dir / "redis.log").is_file()


def test_always_keeps_a_write_acknowledged_just_before_sigkill(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", appendfsync="always")
    server.start()
    try:
        _client(server).set("k", "v")
        server.kill()
        server.restart()
        assert _client(server).get("k") == "v"
    finally:
        server.stop()


def test_the_fsync_policy_comes_from_sb_redis_appendfsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_REDIS_APPENDFSYNC", "always")
    assert LocalRedis(tmp_path / "a").appendfsync == "always"
    monkeypatch.setenv("SB_REDIS_APPENDFSYNC", "sometimes")
    with pytest.raises(ValueError, match="SB_REDIS_APPENDFSYNC"):
        LocalRedis(tmp_path / "b")
