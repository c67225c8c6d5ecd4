"""A secured Kafka and Redis for tests: certificates made with openssl, a KRaft broker whose only client listener is
SASL_SSL with SCRAM-SHA-512 users created at format time, and a redis-server that speaks only TLS to an ACL user.

Both run from the same pieces as the plain test servers (`switchboard_tools.stack`): the cached Kafka jars and
Debian's redis-server (built with TLS).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.kafka import LocalKafka
from switchboard_tools.stack.procs import spawn
from switchboard_tools.stack.redis import LocalRedis, ensure_redis_server
from tests.redis_cluster import MASTERS, LocalRedisCluster, free_node_ports

# The broker's own user (inter-broker traffic) and the services' user, as Strimzi would create them.
BROKER_USER, BROKER_PASSWORD = "broker", "broker-secret-0123"
KAFKA_USER, KAFKA_PASSWORD = "switchboard-router", "kafka-secret-4567"
REDIS_USER, REDIS_PASSWORD = "switchboard", "redis-secret-89ab"


@dataclass(frozen=True)
class Pki:
    """A test CA, a server certificate for 127.0.0.1 / localhost, a client certificate, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    @property
    def server_keystore(self) -> Path:
        """The server's key and certificate in one PEM file (Kafka's PEM keystore)."""
        return self.server_cert.with_name("server-keystore.pem")


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _signed(folder: Path, name: str, subject: str, extensions: str = "") -> None:
    """`name.key` (unencrypted PKCS#8) and `name.pem` signed by the test CA."""
    _openssl(
        folder,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
    )
    extra = []
    if extensions:
        (folder / f"{name}.ext").write_text(extensions)
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        folder,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        *extra,
    )


def make_pki(folder: Path) -> Pki:
    """Make the certificates with openssl: what a cluster CA and its issued certificates are in production."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=switchboard test CA",
    )
    _openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other-ca.key",
        "-out",
        "other-ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=some other CA",
    )
    # The broker connects to itself (inter-broker listener) and checks the host name like every client.
    _signed(folder, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed(folder, "client", "/CN=switchboard")
    pki = Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
        folder / "other-ca.pem",
    )
    pki.server_keystore.write_text(pki.server_key.read_text() + pki.server_cert.read_text())
    return pki


class SaslSslKafka(LocalKafka):
    """One KRaft node whose client and inter-broker listener is SASL_SSL with SCRAM-SHA-512 (the controller
    listener stays on loopback in plain text); the users exist from the start (`format --add-scram`)."""

    def __init__(self, data_dir: Path, pki: Pki, users: dict[str, str]) -> None:
        super().__init__(data_dir, heap="384m")
        self.pki = pki
        self.users = {BROKER_USER: BROKER_PASSWORD, **users}

    def _properties(self) -> str:
        plain = super()._properties().splitlines()
        replaced = ("listeners=", "advertised.listeners=", "inter.broker.listener.name=", "listener.security.")
        kept = [line for line in plain if not line.startswith(replaced)]
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{BROKER_PASSWORD}";'
        )
        return "\n".join(
            [
                *kept,
                f"listeners=SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port}",
                "inter.broker.listener.name=SASL_SSL",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.pki.server_keystore}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.pki.ca}",
                "",
            ]
        )

    def start(self, timeout: float = 90.0) -> None:
        """Format with the SCRAM users (first start only), then start as LocalKafka does."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if not (self.data_dir / "data" / "meta.properties").exists():
            scram = [f"--add-scram=SCRAM-SHA-512=[name={u},password={p}]" for u, p in self.users.items()]
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id=c2VjdXJlLXRlc3QtY2x1c3Rl",
                    "-c",
                    str(config),
                    *scram,
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        super().start(timeout)


class TlsRedis(LocalRedis):
    """A redis-server listening only with TLS (client certificates required), whose `default` user is off and whose
    one user is `REDIS_USER`."""

    def __init__(self, data_dir: Path, pki: Pki) -> None:
        super().__init__(data_dir)
        self.pki = pki

    @property
    def url(self) -> str:
        """The TLS URL (no credentials in it: they come from SB_REDIS_USERNAME / SB_REDIS_PASSWORD)."""
        return f"rediss://127.0.0.1:{self.port}/0"

    def listen_args(self) -> list[str]:
        """TLS only: no plain port."""
        return ["--port", "0", "--tls-port", str(self.port)]

    def extra_args(self) -> list[str]:
        """The server's certificate, the CA its clients' certificates must chain to, and the one ACL user."""
        return [
            "--tls-cert-file",
            str(self.pki.server_cert),
            "--tls-key-file",
            str(self.pki.server_key),
            "--tls-ca-cert-file",
            str(self.pki.ca),
            "--user",
            "default",
            "off",
            "--user",
            REDIS_USER,
            "on",
            f">{REDIS_PASSWORD}",
            "~*",
            "&*",
            "+@all",
        ]


def secure_settings(kafka: SaslSslKafka, redis: TlsRedis, **overrides: Any) -> ServiceSettings:
    """Settings that reach both with the services' credentials and the test CA (and the client certificate Redis
    asks for)."""
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka.bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": KAFKA_USER,
        "kafka_sasl_password": KAFKA_PASSWORD,
        "kafka_ssl_ca_file": kafka.pki.ca,
        "redis_url": redis.url,
        "redis_username": REDIS_USER,
        "redis_password": REDIS_PASSWORD,
        "redis_ssl_ca_file": redis.pki.ca,
        "redis_ssl_cert_file": redis.pki.client_cert,
        "redis_ssl_key_file": redis.pki.client_key,
        **overrides,
    }
    return ServiceSettings(**values)


def security_env(settings: ServiceSettings) -> dict[str, str]:
    """The SB_KAFKA_* / SB_REDIS_* variables a service process reads these settings' credentials and files from."""
    env = {
        "SB_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "SB_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
    }
    values: dict[str, object] = {
        "SB_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "SB_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
        "SB_KAFKA_SSL_CA_FILE": settings.kafka_ssl_ca_file,
        "SB_KAFKA_SSL_CERT_FILE": settings.kafka_ssl_cert_file,
        "SB_KAFKA_SSL_KEY_FILE": settings.kafka_ssl_key_file,
        "SB_REDIS_USERNAME": settings.redis_username,
        "SB_REDIS_PASSWORD": settings.redis_password,
        "SB_REDIS_SSL_CA_FILE": settings.redis_ssl_ca_file,
        "SB_REDIS_SSL_CERT_FILE": settings.redis_ssl_cert_file,
        "SB_REDIS_SSL_KEY_FILE": settings.redis_ssl_key_file,
    }
    for name, value in values.items():
        if value is not None:
            env[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


class TlsRedisCluster(LocalRedisCluster):
    """Three Redis masters speaking only TLS, to clients and to each other (`tls-cluster yes`), with the same
    `REDIS_USER` on every node and the `default` user off."""

    def __init__(self, data_dir: Path, pki: Pki) -> None:
        super().__init__(data_dir)
        self.pki = pki

    @property
    def url(self) -> str:
        """One node's TLS cluster URL; the client discovers the others (and their TLS ports) from it."""
        return f"rediss+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes, create the cluster over TLS as `REDIS_USER`, wait until every node reports ok."""
        server = ensure_redis_server()
        self.ports = free_node_ports(MASTERS)
        self.procs = [self._start_node(server, port) for port in self.ports]
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(deadline, lambda p=port: self._cli(p, "PING").strip() == "PONG", f"node {port}")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = self._cli(self.ports[0], "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
        if "All 16384 slots covered" not in created:
            raise RuntimeError(f"redis-cli --cluster create failed: {created}")
        for port in self.ports:
            self._wait(deadline, lambda p=port: "cluster_state:ok" in self._cli(p, "CLUSTER", "INFO"), f"{port} ok")

    def _tls(self) -> list[str]:
        return [
            "--tls-cert-file",
            str(self.pki.server_cert),
            "--tls-key-file",
            str(self.pki.server_key),
            "--tls-ca-cert-file",
            str(self.pki.ca),
        ]

    def _start_node(self, server: str, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.data_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", *self._tls()]
        args += ["--tls-cluster", "yes", "--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
        args += ["--cluster-config-file", str(node_dir / "nodes.conf"), "--save", "", "--appendonly", "no"]
        args += ["--dir", str(node_dir), "--daemonize", "no", "--user", "default", "off"]
        args += ["--user", REDIS_USER, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all"]
        return spawn(args, node_dir / "redis.log")

    def _cli(self, port: int, *args: str) -> str:
        tls = [
            "--tls",
            "--cacert",
            str(self.pki.ca),
            "--cert",
            str(self.pki.client_cert),
            "--key",
            str(self.pki.client_key),
        ]
        auth = ["--user", REDIS_USER, "--pass", REDIS_PASSWORD, "--no-auth-warning"]
        found = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *tls, *auth, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return found.stdout + found.stderr
