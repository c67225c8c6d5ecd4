"""The fault harness's TCP proxy: it relays, a blackhole stalls both directions without losing a byte, a heal
resumes the same stream, a reset drops every connection."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from switchboard_tools.stack.procs import free_port, port_open, wait_for


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    upstream = server.sockets[0].getsockname()[1]
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard_tools.faults.proxy", str(port), str(upstream)
    )
    await asyncio.to_thread(wait_for, lambda: port_open(port), 20, "the proxy")
    yield proc, port
    proc.terminate()
    await proc.wait()
    server.close()


async def test_relays_stalls_without_loss_heals_and_resets(proxied: tuple[asyncio.subprocess.Process, int]) -> None:
    proc, port = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"

    proc.send_signal(signal.SIGUSR1)
    await asyncio.sleep(0.3)
    writer.write(b"during the blackhole")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(1), 1.0)
    # A connection opened during the blackhole is accepted and hears nothing either.
    late_reader, late_writer = await asyncio.open_connection("127.0.0.1", port)
    late_writer.write(b"late")

    proc.send_signal(signal.SIGUSR2)
    assert await asyncio.wait_for(reader.readexactly(20), 5) == b"during the blackhole"
    assert await asyncio.wait_for(late_reader.readexactly(4), 5) == b"late"

    proc.send_signal(signal.SIGHUP)
    assert await asyncio.wait_for(reader.read(10), 5) == b""
    writer.close()
    late_writer.close()
