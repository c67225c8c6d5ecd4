"""`switchboard up` brings Kafka, Redis and every service to ready, prints where a person starts with the dev
credentials (and they work), listens on loopback only unless SB_UP_BIND says otherwise, runs side by side with a
second stack, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard_tools.stack.up import NOT_STARTED_BY_UP, existing_services

pytestmark = pytest.mark.broker


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes once its parent reaps it; up reaps all of its children.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def _listening(pids: list[int]) -> dict[int, set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """port -> the addresses that the processes `pids` listen on (TCP), from /proc (IPv4-mapped shown as IPv4)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: dict[int, set[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw, port = fields[1].split(":")
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            packed = b"".join(bytes.fromhex(raw[i : i + 8])[::-1] for i in range(0, len(raw), 8))
            address = ipaddress.ip_address(packed)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            found.setdefault(int(port, 16), set()).add(address)
    return found


@dataclass
class Stack:
    """One `switchboard up` started by the test: its process, run dir, printed table and endpoints.json."""

    proc: subprocess.Popen[str]
    run_dir: Path
    printed: str = ""
    endpoints: dict[str, Any] | None = None

    def wait_up(self, timeout: float) -> float:
        """Seconds until the stack printed its table (endpoints.json is written just before)."""
        started = time.monotonic()
        endpoints_file = self.run_dir / "endpoints.json"
        while not endpoints_file.exists():
            assert self.proc.poll() is None, f"up exited early: {self.proc.stdout.read() if self.proc.stdout else ''}"
            assert time.monotonic() - started < timeout, f"stack not ready within {timeout:.0f} s"
            time.sleep(0.2)
        assert self.proc.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("  logs"):
            line = self.proc.stdout.readline()
            assert line, f"up stopped printing: {''.join(lines)}"
            lines.append(line)
        self.printed = "".join(lines)
        self.endpoints = json.loads(endpoints_file.read_text())
        return time.monotonic() - started

    def printed_value(self, label: str) -> str:
        """The first word after `label` at the start of a printed line."""
        match = re.search(rf"^  {label}\s+(\S+)", self.printed, re.MULTILINE)
        assert match, f"up printed no {label}: {self.printed}"
        return match.group(1)

    def stop(self) -> str:
        """Ctrl-C twice (a person often does); the rest of what it printed."""
        self.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=90)
        return out


def start_stack(run_dir: Path, **env_extra: str) -> Stack:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP", "REDIS_URL", "SB_UP_BIND"}}
    env.update(SB_RUN_DIR=str(run_dir), **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard_tools", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Stack(proc, run_dir)


def check_services(stack: Stack, host: str) -> None:
    """Every service ready on `host` and exporting metrics; Kafka and Redis of its own alive."""
    assert stack.endpoints is not None
    # Every service, and the order service the bot's lookups go to (docs/order-lookup.md).
    expected = {n for n in existing_services() if n not in NOT_STARTED_BY_UP} | {"orders"}
    assert set(stack.endpoints["services"]) == expected
    for name, svc in stack.endpoints["services"].items():
        assert svc["http"] == f"http://{'127.0.0.1' if name == 'orders' else host}:{svc['port']}", name
        assert httpx.get(f"{svc['http']}/readyz", timeout=5).status_code == 200, name
        assert "sb_" in httpx.get(f"{svc['http']}/metrics", timeout=5).text or name
    infra = list(stack.endpoints["infrastructure_pids"].values())
    assert len(infra) == 2 and all(_alive(pid) for pid in infra), "Kafka and Redis started by up"


def check_printed_front_door(stack: Stack) -> None:
    """The desk, board, SMTP and operator API up printed answer, with the credentials it printed."""
    desk, board = stack.printed_value("desk"), stack.printed_value("board")
    assert httpx.get(desk, timeout=5).status_code == 200
    assert httpx.get(board, timeout=5).status_code == 200
    gateway = desk.removesuffix("/desk/")
    logins = re.findall(r"^ {13}(shop-[ab]): (.+)$", stack.printed, re.MULTILINE)
    assert {tenant for tenant, _ in logins} == {"shop-a", "shop-b"}
    for tenant, pairs in logins:
        agent, password = pairs.split("  ")[0].split(" / ")
        body = {"tenant_id": tenant, "agent_id": agent, "password": password}
        assert httpx.post(f"{gateway}/login", json=body, timeout=5).status_code == 200, (tenant, agent)
        assert httpx.post(f"{gateway}/login", json={**body, "password": "wrong"}, timeout=5).status_code == 401
    operator = stack.printed_value("operator")
    token = re.search(r"Authorization: Bearer (\S+)", stack.printed)
    assert token and operator.endswith("/v1/operator/tenants/{tenant}/")
    for tenant in ("shop-a", "shop-b"):
        agents = operator.format(tenant=tenant) + "agents"
        bearer = {"Authorization": f"Bearer {token.group(1)}"}
        assert httpx.get(agents, headers=bearer, timeout=5).status_code == 200, tenant
        assert httpx.get(agents, timeout=5).status_code == 401
    supervisor = re.search(r"supervisor token of shop-a: (\S+)", stack.printed)
    assert supervisor
    headers = {"Authorization": f"Bearer {supervisor.group(1)}"}
    assert httpx.get(operator.format(tenant="shop-a") + "agents", headers=headers, timeout=5).status_code == 200
    assert httpx.get(operator.format(tenant="shop-b") + "agents", headers=headers, timeout=5).status_code == 403
    smtp_host, smtp_port = stack.printed_value("smtp").rsplit(":", 1)
    with smtplib.SMTP(smtp_host, int(smtp_port), timeout=10) as smtp:
        assert smtp.ehlo()[0] == 250


def check_listening(stack: Stack, http_host: str) -> None:
    """Every port of the stack listens on loopback only: the services' HTTP and SMTP ports on `http_host`."""
    assert stack.endpoints is not None
    services = stack.endpoints["services"]
    pids = [svc["pid"] for svc in services.values()] + list(stack.endpoints["infrastructure_pids"].values())
    listening = _listening(pids)
    assert listening, "no listening socket found for the stack's processes"
    for port, addresses in listening.items():
        assert all(address.is_loopback for address in addresses), f"port {port} listens on {addresses}"
    for name, svc in services.items():
        want = "127.0.0.1" if name == "orders" else http_host
        assert listening[svc["port"]] == {ipaddress.ip_address(want)}, name
    smtp_port = int(stack.printed_value("smtp").rsplit(":", 1)[1])
    assert listening[smtp_port] == {ipaddress.ip_address(http_host)}


def test_two_stacks_run_side_by_side_on_loopback_and_print_what_a_person_needs(tmp_path: Path) -> None:
    first = start_stack(tmp_path / "first")
    stacks = [first]
    try:
        took = first.wait_up(timeout=90)
        # The second binds the documented setting's address: another loopback one, as this machine allows no other.
        second = start_stack(tmp_path / "second", SB_UP_BIND="127.0.0.2")
        stacks.append(second)
        second.wait_up(timeout=120)
        for stack, host in ((first, "127.0.0.1"), (second, "127.0.0.2")):
            check_services(stack, host)
            check_printed_front_door(stack)
            check_listening(stack, host)
        assert first.endpoints is not None and second.endpoints is not None
        assert first.endpoints["kafka_bootstrap"] != second.endpoints["kafka_bootstrap"]
        assert first.endpoints["redis_url"] != second.endpoints["redis_url"]
        assert "listening  on 127.0.0.1 " in first.printed and "listening  on 127.0.0.2 " in second.printed
    finally:
        outs = [stack.stop() for stack in stacks]
    for stack, out in zip(stacks, outs, strict=True):
        assert stack.proc.returncode == 0, out
        assert "switchboard is up" in stack.printed and "switchboard stopped" in out
        assert stack.endpoints is not None
        pids = [svc["pid"] for svc in stack.endpoints["services"].values()]
        pids += list(stack.endpoints["infrastructure_pids"].values())
        leftovers = [pid for pid in pids if _alive(pid)] + _processes_mentioning(str(stack.run_dir))
        assert not leftovers, f"processes left behind: {leftovers}"
    print(f"first stack ready in {took:.1f}s, both side by side")
