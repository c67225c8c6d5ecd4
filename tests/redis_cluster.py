"""A real Redis Cluster on loopback for tests: three masters from Debian's redis-server, no replicas.

`LocalRedisCluster(data_dir).start()` picks free ports (each node also needs its bus port, port + 10000), starts
the nodes with `--cluster-enabled yes`, joins them with `redis-cli --cluster create`, and waits until every node
answers `cluster_state:ok`. `stop()` shuts every node down. Clients connect with `url` (`redis+cluster://...`),
which `switchboard.runtime.redis_client` turns into a RedisCluster.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MASTERS = 3

# Runs a test (or, as `pytestmark`, a module) once on one Redis server and once on the cluster; the `redis_backend`
# fixture of tests/conftest.py then hands `settings`, `redis` and `redis_url_for_test` the backend's URL.
on_both_redis_backends = pytest.mark.parametrize("redis_backend", ["single", "cluster"])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_node_ports(count: int) -> list[int]:
    """`count` ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 <= 65535 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


def _redis_cli(port: int, *args: str, timeout: float = 10.0) -> str:
    found = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return found.stdout


@dataclass
class LocalRedisCluster:
    """Three Redis masters on loopback forming one cluster, with their files in `data_dir`."""

    data_dir: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL services and tests use: one node; the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes, create the cluster and wait until every node reports `cluster_state:ok`."""
        server = shutil.which("redis-server")
        if server is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are needed (Debian: apt-get install redis-server)")
        self.ports = free_node_ports(MASTERS)
        for port in self.ports:
            self.procs.append(self._start_node(server, port))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(deadline, lambda p=port: _redis_cli(p, "PING").strip() == "PONG", f"node {port}")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        for port in self.ports:
            self._wait(deadline, lambda p=port: "cluster_state:ok" in _redis_cli(p, "CLUSTER", "INFO"), f"{port} ok")

    def _start_node(self, server: str, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.data_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        args += ["--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-node-timeout", "5000"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(node_dir), "--daemonize", "no"]
        with (node_dir / "redis.log").open("ab") as log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, deadline: float, check: Callable[[], bool], what: str) -> None:
        while not check():
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a cluster node exited; see the logs under {self.data_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster: {what} not reached; see the logs under {self.data_dir}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Shut every node down (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
