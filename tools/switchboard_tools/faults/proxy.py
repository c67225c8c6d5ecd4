"""A small TCP proxy that can blackhole: services reach Redis or Kafka through it, the fault harness cuts the line.

It runs as a process of its own (`python -m switchboard_tools.faults.proxy LISTEN_PORT UPSTREAM_PORT`), so the
bytes it relays never wait on the harness's own event loop, and it is controlled by signals:

- SIGUSR1 blackholes: nothing is relayed any more in either direction and new connections are accepted but never
  connected upstream. Bytes already sent wait in the socket buffers, as packets a partitioned network drops and TCP
  retransmits, so a short blackhole heals with every stream intact (a stall); the peers see silence, not a reset.
- SIGUSR2 heals: relaying resumes where it stopped.
- SIGHUP resets: every open connection is closed at once (both sides see the connection drop).
- SIGTERM stops the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 65536


class Proxy:
    """Relays loopback connections from one port to another until blackholed."""

    def __init__(self, listen_port: int, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.listen_port, self.upstream_port, self.host = listen_port, upstream_port, host
        self.open = asyncio.Event()
        self.open.set()
        self.writers: set[asyncio.StreamWriter] = set()

    def blackhole(self) -> None:
        """Stop relaying (the peers see silence)."""
        self.open.clear()

    def heal(self) -> None:
        """Relay again."""
        self.open.set()

    def reset(self) -> None:
        """Close every open connection."""
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def serve(self, stop: asyncio.Event) -> None:
        """Accept and relay until `stop` is set."""
        server = await asyncio.start_server(self._client, self.host, self.listen_port, reuse_address=True)
        async with server:
            await stop.wait()
        self.reset()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        # Cancelled when the proxy stops: the connections just close.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self.open.wait()
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
            self.writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._close(up_writer)
        self._close(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.open.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            # A blackhole that began while this read waited: hold the bytes until it heals (TCP would resend them).
            await self.open.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self.writers.discard(writer)
        writer.transport.abort()


async def main(listen_port: int, upstream_port: int) -> None:
    """Run one proxy with its signal handlers until SIGTERM or SIGINT."""
    proxy = Proxy(listen_port, upstream_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.blackhole)
    loop.add_signal_handler(signal.SIGUSR2, proxy.heal)
    loop.add_signal_handler(signal.SIGHUP, proxy.reset)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await proxy.serve(stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("listen_port", type=int)
    parser.add_argument("upstream_port", type=int)
    args = parser.parse_args()
    asyncio.run(main(args.listen_port, args.upstream_port))
