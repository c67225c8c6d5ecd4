"""A real Redis server as a local process; Debian's redis-server is installed when missing and we are root.

It persists as the manifests do: an append-only file (AOF) fsynced every second (`SB_REDIS_APPENDFSYNC`: `everysec`,
`always` or `no`), no RDB snapshots. `kill()` SIGKILLs it (a crash: at most the last second of writes is lost with
`everysec`), `restart()` starts it again on the same port from the same files, and `restart(empty=True)` wipes its
data files first: "Redis restarted empty" (docs/state.md, "When Redis loses its data").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from switchboard_tools.stack.debian import ensure_debian_command
from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate, wait_for

INSTALL_HINT = (
    "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`, "
    "macOS: `brew install redis`) or point REDIS_URL at a running Redis."
)

APPENDFSYNC_ENV = "SB_REDIS_APPENDFSYNC"
APPENDFSYNC_CHOICES = ("everysec", "always", "no")
LOG_NAME = "redis.log"


def ensure_redis_server() -> str:
    """The path of redis-server, installing Debian's package first when it is missing and we are root."""
    return ensure_debian_command("redis-server", "redis-server", INSTALL_HINT)


def appendfsync_from_env() -> str:
    """The AOF fsync policy `SB_REDIS_APPENDFSYNC` names (`everysec` when unset); ValueError for anything else."""
    value = os.environ.get(APPENDFSYNC_ENV, "").strip() or "everysec"
    if value not in APPENDFSYNC_CHOICES:
        raise ValueError(f"{APPENDFSYNC_ENV}={value!r}: expected one of {', '.join(APPENDFSYNC_CHOICES)}")
    return value


@dataclass
class LocalRedis:
    """One Redis server on loopback with an append-only file, its files (and log) in `data_dir`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    appendfsync: str = field(default_factory=appendfsync_from_env)

    def __post_init__(self) -> None:
        if self.appendfsync not in APPENDFSYNC_CHOICES:
            raise ValueError(f"appendfsync={self.appendfsync!r}: expected one of {', '.join(APPENDFSYNC_CHOICES)}")

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

    def persistence_args(self) -> list[str]:
        """AOF on with the chosen fsync policy, RDB snapshots off (the AOF is the one copy, as in the manifests)."""
        return ["--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync]

    def start(self, timeout: float = 20.0) -> None:
        """Start the server (loading its AOF, if any) and wait until it answers commands."""
        server = ensure_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                server,
                *self.listen_args(),
                "--bind",
                "127.0.0.1",
                *self.persistence_args(),
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                *self.extra_args(),
            ],
            self.data_dir / LOG_NAME,
        )
        wait_for(
            lambda: self.proc is not None and self.proc.poll() is None and self.ready(),
            timeout,
            f"Redis on {self.url}",
        )

    def ready(self) -> bool:
        """True when the server answers PING with PONG (not LOADING while it replays its AOF). A TLS variant only
        checks that its port accepts connections."""
        if not self.url.startswith("redis://"):
            return port_open(self.port)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM: it fsyncs its AOF before it exits)."""
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an OOM kill would: writes not yet fsynced are lost."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def wipe(self) -> None:
        """Remove the server's data files (AOF directory, RDB), keeping its log. Only while it is not running."""
        if self.proc is not None:
            raise RuntimeError("wipe() while Redis runs: kill() or stop() it first")
        if not self.data_dir.exists():
            return
        for entry in self.data_dir.iterdir():
            if entry.name == LOG_NAME:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def restart(self, *, empty: bool = False, timeout: float = 20.0) -> None:
        """Start the server again on the same port from the same data dir; a server still running is SIGKILLed
        first. `empty=True` wipes the data files first: Redis comes back with nothing in it."""
        self.kill()
        if empty:
            self.wipe()
        wait_for(lambda: not port_open(self.port), 10.0, f"port {self.port} free after Redis stopped")
        self.start(timeout)
