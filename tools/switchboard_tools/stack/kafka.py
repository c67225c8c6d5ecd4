"""A real Apache Kafka broker in KRaft mode, from Maven Central jars, as a local JVM process."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate, wait_for

ROOT = Path(__file__).resolve().parents[3]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.properties"
CACHE = ROOT / ".cache" / "kafka"


def _libs_dir() -> Path:
    """The jar folder for the current pom: a changed pom gets a folder of its own, so nothing stale is mixed in."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return CACHE / f"libs-{digest}"


def ensure_jars(libs: Path | None = None) -> Path:
    """Download the broker jars into the cache once; later calls find them and download nothing."""
    libs = libs or _libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars from Maven Central; install it")
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    marker.touch()
    return libs


@dataclass
class LocalKafka:
    """One KRaft node (broker and controller) on loopback with its data in `data_dir`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    heap: str = "512m"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data_dir / 'data'}",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=3",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # The services' consumer sessions are 1.5 s (SB_KAFKA_SESSION_TIMEOUT_MS): the default floor is 6 s.
                "group.min.session.timeout.ms=1000",
                "auto.create.topics.enable=false",
                # Small segments and indexes keep a test broker's disk and start time small.
                "log.segment.bytes=16777216",
                "log.index.size.max.bytes=1048576",
                "",
            ]
        )

    def _java(self, main: str, *args: str) -> list[str]:
        libs = ensure_jars()
        return [
            "java",
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage (first start only), start the broker, and wait until it takes clients."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if not (self.data_dir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                # `--cluster-id=ID` in one argument: an id starting with "-" (1 in 32) would read as an option.
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.proc = spawn(self._java("kafka.Kafka", str(config)), self.data_dir / "broker.log")
        wait_for(lambda: self._alive() and port_open(self.port), timeout, f"Kafka on {self.bootstrap}")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.data_dir / "broker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka exited with {self.proc.returncode}:\n{log}")
        return True

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after a while)."""
        if self.proc is not None:
            terminate(self.proc, timeout=30)
            self.proc = None

    def kill(self) -> None:
        """Kill the broker at once (fault tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
