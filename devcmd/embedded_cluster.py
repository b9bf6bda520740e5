"""A local Redis Cluster of embedded servers (the same binary as `devcmd.embedded`): for the
tests and `devcmd run --redis-cluster N`.

The cluster is formed from Python (CLUSTER ADDSLOTS, MEET, REPLICATE), so no `redis-cli` is
needed: each master gets an equal share of the 16384 slots, each replica follows one master.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import redis

from devcmd.embedded import RedisServer, find_binary, free_port

SLOTS = 16384
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too; both must stay below
    65536, so ephemeral ports (often above 55535) do not do."""
    while True:
        port = random.randint(20_000, 45_000)
        if _free(port) and _free(port + BUS_OFFSET):
            return port


class ClusterNodeServer(RedisServer):
    """One redis-server in cluster mode; its cluster state lives in `nodes.conf` beside its AOF."""

    def __init__(self, directory: Path, port: int, node_timeout_ms: int) -> None:
        super().__init__(directory, port)
        self.node_timeout_ms = node_timeout_ms

    def args(self) -> list[str]:
        return [
            *super().args(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # Redis 7 and Valkey sync replicas diskless after a 5 s delay by default: a replica
            # would not acknowledge a WAIT for the first seconds of a test.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def node_id(self) -> str:
        with self.client() as client:
            return client.execute_command("CLUSTER MYID")


class EmbeddedCluster:
    """`masters` masters, each with `replicas` replicas, on free loopback ports under
    `directory`."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.directory = Path(directory)
        self.masters = [
            ClusterNodeServer(self.directory / f"master-{i}", free_cluster_port(), node_timeout_ms)
            for i in range(masters)
        ]
        self.replicas = [
            ClusterNodeServer(
                self.directory / f"replica-{i}-{j}", free_cluster_port(), node_timeout_ms
            )
            for i in range(masters)
            for j in range(replicas)
        ]
        self.replicas_per_master = replicas

    @property
    def nodes(self) -> list[ClusterNodeServer]:
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        """`redis+cluster://` with every master as a seed node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in self.masters)

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        """Start every server, assign the slots, join the nodes, and wait for `cluster_state:ok`
        on all of them."""
        for node in self.nodes:
            node.start()
        share = SLOTS // len(self.masters)
        for i, master in enumerate(self.masters):
            last = SLOTS if i == len(self.masters) - 1 else (i + 1) * share
            with master.client() as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(i * share, last))
        with self.masters[0].client() as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        self._wait(lambda: all(self._known(n) == len(self.nodes) for n in self.nodes), timeout)
        for i, master in enumerate(self.masters):
            master_id = master.node_id()
            for j in range(self.replicas_per_master):
                replica = self.replicas[i * self.replicas_per_master + j]
                with replica.client() as client:
                    client.execute_command("CLUSTER REPLICATE", master_id)
        self._wait(lambda: all(self._ok(n) for n in self.nodes), timeout)
        self._wait(lambda: all(self._synced(r) for r in self.replicas), timeout)
        return self

    @staticmethod
    def _synced(replica: ClusterNodeServer) -> bool:
        """Whether the replica finished its first sync (it then acknowledges WAITs)."""
        with replica.client() as client:
            return client.info("replication").get("master_link_status") == "up"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for master in self.live_masters():
            with redis.Redis(port=master, socket_timeout=5) as client:
                client.flushall()

    def live_masters(self) -> list[int]:
        """Ports of the nodes that are masters now (after failovers too)."""
        ports = []
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with node.client() as client:
                if client.info("replication")["role"] == "master":
                    ports.append(node.port)
        return ports

    @staticmethod
    def _known(node: ClusterNodeServer) -> int:
        with node.client() as client:
            return int(client.cluster("info")["cluster_known_nodes"])

    def _ok(self, node: ClusterNodeServer) -> bool:
        with node.client() as client:
            info = client.cluster("info")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
                return False
            if node in self.replicas:
                return client.info("replication")["role"] == "slave"
            return True

    @staticmethod
    def _wait(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded Redis Cluster did not form in time")
            time.sleep(0.1)


class ReplicaServer(RedisServer):
    """A redis-server replicating `primary_port` on 127.0.0.1."""

    def __init__(self, directory: Path, port: int, primary_port: int) -> None:
        super().__init__(directory, port)
        self.primary_port = primary_port

    def args(self) -> list[str]:
        return [*super().args(), "--replicaof", "127.0.0.1", str(self.primary_port)]


class SentinelServer(RedisServer):
    """A redis-server in Sentinel mode watching the master `name` (its config file is its own:
    Sentinel rewrites it as it learns the set)."""

    def __init__(
        self, directory: Path, port: int, name: str, primary_port: int, down_after_ms: int
    ) -> None:
        super().__init__(directory, port, appendonly=False)
        self.name = name
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms

    def args(self) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"logfile {self.directory / 'redis.log'}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.name} 10000\n"
        )
        return [find_binary(), str(conf), "--sentinel"]


class EmbeddedSentinelSet:
    """A Sentinel-managed Redis (a primary, one replica, three Sentinels with quorum 2) on free
    loopback ports: an HA broker for the tests."""

    def __init__(self, directory: Path, name: str = "devcmd", down_after_ms: int = 1000) -> None:
        self.directory = Path(directory)
        self.name = name
        self.primary = RedisServer(self.directory / "primary", free_port())
        self.replica = ReplicaServer(self.directory / "replica", free_port(), self.primary.port)
        self.sentinels = [
            SentinelServer(
                self.directory / f"sentinel-{i}",
                free_port(),
                name,
                self.primary.port,
                down_after_ms,
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        """CELERY_BROKER_URL naming every Sentinel."""
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self, timeout: float = 30.0) -> EmbeddedSentinelSet:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        EmbeddedCluster._wait(self._replicating, timeout)
        return self

    def _replicating(self) -> bool:
        with redis.Redis(port=self.replica.port, decode_responses=True) as client:
            if client.info("replication").get("master_link_status") != "up":
                return False
        with redis.Redis(port=self.sentinels[0].port, decode_responses=True) as client:
            return int(client.sentinel_master(self.name)["num-other-sentinels"]) == 2

    def master_port(self) -> int | None:
        """The port of the master every Sentinel names now, once that master answers as one
        (None while they disagree, or it is still being promoted)."""
        ports = set()
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True) as client:
                ports.add(int(client.sentinel_get_master_addr_by_name(self.name)[1]))
        if len(ports) != 1:
            return None
        (port,) = ports
        try:
            with redis.Redis(port=port, decode_responses=True, socket_timeout=1) as client:
                return port if client.info("replication")["role"] == "master" else None
        except redis.RedisError:
            return None

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.stop()
