"""A real Redis server as a local process; Debian's redis-server is installed when missing and we are root."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from switchboard_tools.stack.debian import ensure_debian_command
from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate, wait_for

INSTALL_HINT = (
    "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`, "
    "macOS: `brew install redis`) or point REDIS_URL at a running Redis."
)


def ensure_redis_server() -> str:
    """The path of redis-server, installing Debian's package first when it is missing and we are root."""
    return ensure_debian_command("redis-server", "redis-server", INSTALL_HINT)


@dataclass
class LocalRedis:
    """One Redis server on loopback, without persistence, with its files in `data_dir`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients use."""
        return f"redis://127.0.0.1:{self.port}/0"

    def listen_args(self) -> list[str]:
        """Where the server listens for clients (a TLS variant listens on its TLS port instead)."""
        return ["--port", str(self.port)]

    def extra_args(self) -> list[str]:
        """More redis-server options of a variant (users, certificates); none here."""
        return []

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it accepts connections."""
        server = ensure_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                server,
                *self.listen_args(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                *self.extra_args(),
            ],
            self.data_dir / "redis.log",
        )
        wait_for(
            lambda: self.proc is not None and self.proc.poll() is None and port_open(self.port),
            timeout,
            f"Redis on {self.url}",
        )

    def stop(self) -> None:
        """Stop the server."""
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None
