"""Kafka for the fault harness: one KRaft node whose clients may come through a proxy, or a 3-node KRaft cluster.

`KafkaNode` is `LocalKafka` with a node id, a shared quorum and cluster id, replication settings and an advertised
port of its own choosing (the port of a `faults.proxy` in front of it, so every client's connection, including
those after the metadata answer, passes the proxy). `KafkaCluster` is three of them, each broker and controller,
with replication factor 3 and min.insync.replicas 2: one node may die and every write with acks=all still lands.
"""

from __future__ import annotations

import base64
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from switchboard_tools.stack.kafka import LocalKafka
from switchboard_tools.stack.procs import free_port


def new_cluster_id() -> str:
    """A KRaft cluster id (22 characters of URL-safe base64 of a UUID)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class KafkaNode(LocalKafka):
    """One KRaft node (broker and controller) of a cluster, or alone; its storage formatted with `cluster_id`."""

    node_id: int = 1
    voters: str = ""
    cluster_id: str = field(default_factory=new_cluster_id)
    replication: int = 1
    min_isr: int = 1
    advertised_port: int | None = None

    def _properties(self) -> str:
        advertised = self.advertised_port or self.port
        changes = {
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{advertised}",
            "offsets.topic.replication.factor": str(self.replication),
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(self.min_isr),
            "share.coordinator.state.topic.replication.factor": str(self.replication),
            "share.coordinator.state.topic.min.isr": str(self.min_isr),
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(self.min_isr),
        }
        lines = []
        for line in super()._properties().splitlines():
            key = line.split("=", 1)[0]
            lines.append(f"{key}={changes.pop(key)}" if key in changes else line)
        return "\n".join([*lines[:-1], *(f"{k}={v}" for k, v in changes.items()), ""])

    def start(self, timeout: float = 120.0) -> None:
        """Format the storage with the shared cluster id (first start only), then start as LocalKafka does."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if not (self.data_dir / "data" / "meta.properties").exists():
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}", "-c", str(config)),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        super().start(timeout)


@dataclass
class KafkaCluster:
    """Three KRaft nodes on loopback with replication factor 3 and min.insync.replicas 2."""

    data_dir: Path
    size: int = 3
    heap: str = "384m"
    nodes: list[KafkaNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{ctl}" for i, (_, ctl) in enumerate(ports))
        cluster_id = new_cluster_id()
        self.nodes = [
            KafkaNode(
                self.data_dir / f"node-{i + 1}",
                port=port,
                controller_port=ctl,
                heap=self.heap,
                node_id=i + 1,
                voters=voters,
                cluster_id=cluster_id,
                replication=min(3, self.size),
                min_isr=min(2, self.size),
            )
            for i, (port, ctl) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address (clients need one that answers)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def replication(self) -> int:
        """The replication factor of the cluster's topics."""
        return self.nodes[0].replication

    def start(self) -> None:
        """Start every node at once: each waits for its own port, which opens only once a majority of the quorum
        runs, so starting them one after another would wait on the first forever."""
        errors: list[BaseException] = []

        def run(node: KafkaNode) -> None:
            try:
                node.start()
            except BaseException as exc:  # reported below, after every node had its chance
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(node,)) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise errors[0]

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
