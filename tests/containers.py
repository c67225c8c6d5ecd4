"""Kafka and Redis for a test session in Docker containers, when a Docker engine answers.

testcontainers' generic `DockerContainer` runs the official `apache/kafka` image (KRaft, one node that is broker and
controller) and `redis`; its Confluent-specific Kafka module is not used. The broker's client listener listens on the
same port number inside the container as the one published on the Docker host, so the address it advertises
(`<docker host>:<port>`) is right both for the test process and for the broker itself.

Which backend a session uses (`backend`): KAFKA_BOOTSTRAP / REDIS_URL when set, else containers when `docker info`
answers, else local processes (tools/switchboard_tools/stack).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from switchboard_tools.stack.procs import free_port

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

POM = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "pom.xml"
REDIS_IMAGE = "redis:7"
REDIS_PORT = 6379
# The controller listener stays inside the container; only the client listener is published.
CONTROLLER_PORT = 9093

Backend = Literal["given", "docker", "local"]


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version the local broker's jars are pinned to (deploy/kafka/pom.xml), so both backends agree."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise ValueError(f"{pom}: no <kafka.version> property")
    return node.text.strip()


def docker_answers() -> bool:
    """True when a `docker` client is on PATH and `docker info` reaches an engine."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def backend(given: str | None, docker: Callable[[], bool] = docker_answers) -> Backend:
    """Where a session's Kafka or Redis comes from: the address in the environment, containers, or local processes.

    `docker` is asked only when no address is given (`docker info` takes a while when no engine answers).
    """
    if given:
        return "given"
    return "docker" if docker() else "local"


@dataclass(frozen=True)
class ContainerSpec:
    """What a container is started with: image, environment, and container port -> host port (None: any free)."""

    image: str
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int | None] = field(default_factory=dict)
    command: str | None = None


def kafka_spec(host: str, port: int, version: str | None = None) -> ContainerSpec:
    """A one-node KRaft broker whose clients reach it at `host:port` (published as the same port number)."""
    return ContainerSpec(
        image=f"apache/kafka:{version or kafka_version()}",
        env={
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{CONTROLLER_PORT}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://localhost:{CONTROLLER_PORT}",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
            # The same broker settings as the local process (tools/switchboard_tools/stack/kafka.py).
            "KAFKA_NUM_PARTITIONS": "3",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "3",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS": "1000",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        },
        ports={port: port},
    )


def redis_spec() -> ContainerSpec:
    """A Redis server without persistence (a test session's data is thrown away)."""
    return ContainerSpec(image=REDIS_IMAGE, ports={REDIS_PORT: None}, command="redis-server --save '' --appendonly no")


def build(spec: ContainerSpec, make: Callable[[str], DockerContainer] | None = None) -> DockerContainer:
    """A testcontainers generic container configured by `spec`, not started (`make` builds it from the image)."""
    if make is None:
        from testcontainers.core.container import DockerContainer

        make = DockerContainer
    container = make(spec.image)
    container.with_envs(**spec.env)
    for inside, published in spec.ports.items():
        if published is None:
            container.with_exposed_ports(inside)
        else:
            container.with_bind_ports(inside, published)
    if spec.command:
        container.with_command(spec.command)
    return container


def docker_host() -> str:
    """The address of the Docker host as testcontainers sees it (where published ports are reached)."""
    from testcontainers.core.docker_client import DockerClient

    return str(DockerClient().host())


@contextmanager
def kafka_container() -> Iterator[str]:
    """Run an `apache/kafka` container for the duration; yields its bootstrap address (wait for it before use)."""
    host, port = docker_host(), free_port()
    with build(kafka_spec(host, port)):
        yield f"{host}:{port}"


@contextmanager
def redis_container() -> Iterator[str]:
    """Run a `redis` container for the duration; yields its URL (database 0)."""
    with build(redis_spec()) as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(REDIS_PORT)}/0"
