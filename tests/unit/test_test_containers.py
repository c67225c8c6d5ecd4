"""The test session's choice of Kafka and Redis (given address, Docker containers, local processes), and the
containers it would start.

No Docker engine answers on the machines these tests were written on: the containers themselves are not started
here; what is checked is the selection and the configuration handed to testcontainers' generic DockerContainer.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests import containers


def fake_docker(folder: Path, exit_code: int) -> None:
    """A `docker` executable in `folder` whose every command exits with `exit_code`."""
    script = folder / "docker"
    script.write_text(f"#!/bin/sh\nexit {exit_code}\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_an_address_in_the_environment_wins_and_docker_is_not_asked() -> None:
    def docker() -> bool:
        raise AssertionError("docker must not be asked when an address is given")

    assert containers.backend("127.0.0.1:9092", docker) == "given"


def test_containers_when_docker_answers_else_local_processes() -> None:
    assert containers.backend(None, lambda: True) == "docker"
    assert containers.backend("", lambda: True) == "docker"
    assert containers.backend(None, lambda: False) == "local"


@pytest.mark.parametrize(("exit_code", "answers"), [(0, True), (1, False)])
def test_docker_answers_when_docker_info_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int, answers: bool
) -> None:
    fake_docker(tmp_path, exit_code)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert containers.docker_answers() is answers


def test_no_docker_client_means_local_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert containers.docker_answers() is False
    assert containers.backend(None) == "local"


def test_the_kafka_image_is_the_version_the_local_broker_is_pinned_to() -> None:
    version = containers.kafka_version()
    assert version.count(".") == 2 and version[0].isdigit()
    assert containers.kafka_spec("localhost", 39092).image == f"apache/kafka:{version}"


def test_the_broker_advertises_the_published_address_on_the_same_port_inside() -> None:
    spec = containers.kafka_spec("docker.example", 39092, version="4.1.1")
    env = spec.env
    assert spec.ports == {39092: 39092}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://docker.example:39092"
    assert env["KAFKA_LISTENERS"] == f"PLAINTEXT://:39092,CONTROLLER://localhost:{containers.CONTROLLER_PORT}"
    # KRaft, one node that is broker and controller, and no ZooKeeper setting anywhere.
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@localhost:{containers.CONTROLLER_PORT}"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert not [k for k in env if "ZOOKEEPER" in k]
    # One broker: the internal topics the services' transactions and groups use must not ask for three replicas.
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


class _NoEngine:
    """Stands in for testcontainers' DockerClient: building a container must not need an engine."""

    def __init__(self, **_: object) -> None:
        pass


def test_the_specs_are_handed_to_the_generic_container(monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core import container as tc

    monkeypatch.setattr(tc, "DockerClient", _NoEngine)
    kafka = containers.build(containers.kafka_spec("localhost", 39092, version="4.1.1"))
    assert type(kafka) is tc.DockerContainer
    assert kafka.image.endswith("apache/kafka:4.1.1")
    assert kafka.ports == {"39092": 39092}
    assert kafka.env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://localhost:39092"
    redis = containers.build(containers.redis_spec())
    assert redis.image.endswith("redis:7")
    assert redis.ports == {"6379": None}


def test_the_confluent_kafka_module_is_not_used() -> None:
    source = Path(containers.__file__).read_text(encoding="utf-8")
    conftest = (Path(containers.__file__).parent / "conftest.py").read_text(encoding="utf-8")
    for text in (source, conftest):
        assert "testcontainers.kafka" not in text
        assert "KafkaContainer" not in text
