"""Throw-away ``redis-server`` processes for benchmarks and tests: a free port, a temporary
directory, the durability callsys's Redis store demands (``--appendonly yes --appendfsync
always``), and nothing saved outside that directory. Also a Sentinel watching one of them
and a local Redis Cluster of several.

    with RedisServer.start(tmp_path) as server:
        url = server.url            # redis://127.0.0.1:PORT/0
        server.kill()               # SIGKILL, as a crash
        server.restart()            # same port, same directory: Redis reloads its AOF
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

REDIS_SERVER: Final = "redis-server"
READY: Final = b"Ready to accept connections"  # redis-server's log line once it serves clients
SENTINEL_READY: Final = b"+monitor master"  # a Sentinel's log line once it watches its master
SERVICE: Final = "mymaster"  # the Sentinel's name for the master it watches
CLUSTER_READY_S: Final = 30.0  # seconds for a new cluster's nodes to agree that it is up
CLUSTER_POLL_S: Final = 0.02  # seconds between two looks at a new cluster's state
START_ATTEMPTS: Final = 3  # tries with another free port when the chosen one was taken meanwhile


@dataclass(frozen=True, slots=True)
class Certificates:
    """A throw-away CA and a server certificate it signed for ``localhost``/127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> "Certificates":
        """Create them in *directory* with the ``openssl`` command."""
        directory.mkdir(parents=True, exist_ok=True)
        ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
        cert, key, request = directory / "server.pem", directory / "server-key.pem", directory / "server.csr"
        extensions = directory / "san.cnf"
        extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for argv in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=callsys test CA",
             "-keyout", ca_key, "-out", ca],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", request],
            ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
             "-extfile", extensions, "-out", cert],
        ):
            subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
        return cls(ca, cert, key)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1 whose files live in *directory*."""

    def __init__(self, directory: Path, port: int, extra: tuple[str, ...] = (),
                 watches: "RedisServer | None" = None, tls: "Certificates | None" = None) -> None:
        self.directory = directory
        self.port = port
        self.extra = extra
        self.watches = watches  # a Sentinel: the master it watches
        self.tls = tls  # serve TLS only, on self.port, with these certificates
        self.process: subprocess.Popen | None = None
        self.output: list[bytes] = []

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, or ``rediss://localhost:PORT/0?ssl_ca_certs=CA`` with TLS."""
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def sentinel(cls, directory: Path, master: "RedisServer") -> "RedisServer":
        """Start a Sentinel in *directory* watching *master* as :data:`SERVICE` (quorum 1)."""
        return cls.start(directory, watches=master)

    @classmethod
    def start(cls, directory: Path, *extra: str, watches: "RedisServer | None" = None,
              tls: "Certificates | None" = None) -> "RedisServer":
        """Start a server in *directory* (created if missing) on a free port; return once it serves.

        Args:
            extra: more ``redis-server`` arguments, e.g. ``"--appendfsync", "everysec"`` (later
                arguments override the defaults).

        Raises:
            RuntimeError: ``redis-server`` is not installed or exited before it was ready.
        """
        if shutil.which(REDIS_SERVER) is None:
            raise RuntimeError(f"{REDIS_SERVER} is not installed (make setup installs it)")
        directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            server = cls(directory, free_port(), extra, watches, tls)
            try:
                server._spawn()
                return server
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1 or b"Address already in use" not in b"".join(server.output):
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        if self.watches is None:
            ports = (["--port", str(self.port)] if self.tls is None else
                     ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                      "--tls-auth-clients", "no"])
            argv = [REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--dir", str(self.directory),
                    "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "",
                    "--daemonize", "no", *self.extra]
        else:  # a Sentinel rewrites its configuration file: one of its own in the directory
            conf = self.directory / f"sentinel-{self.port}.conf"
            conf.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {self.watches.port} 1\n")
            argv = [REDIS_SERVER, str(conf), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", str(self.directory), "--logfile", "", "--daemonize", "no", *self.extra]
        ready = READY if self.watches is None else SENTINEL_READY
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in self.process.stdout:  # until ready, or EOF when it exits
            self.output.append(line)
            if ready in line:
                break
        else:
            self.process.wait()
            raise RuntimeError(f"redis-server exited with {self.process.returncode} before it was ready: "
                               + b"".join(self.output[-8:]).decode(errors="replace"))
        self.process.stdout.close()  # nothing reads it from here on; redis-server ignores SIGPIPE
        client = redis.Redis.from_url(self.url)
        try:
            client.ping()
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server and reap it (a crash: only what is in its AOF survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def restart(self) -> None:
        """Kill the server if it runs, then start it again on the same port and directory."""
        self.kill()
        self.output = []
        self._spawn()

    def stop(self) -> None:
        """Stop the server (SIGKILL: its files are thrown away with the directory)."""
        self.kill()

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster:
    """A local Redis Cluster: *nodes* primaries (no replicas) on free ports, each in its own
    subdirectory of *directory*, the 16,384 slots spread by ``redis-cli --cluster create``."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:PORT,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @classmethod
    def start(cls, directory: Path, nodes: int = 3) -> "RedisCluster":
        """Start the nodes and join them; return once ``redis-cli`` reports every slot covered.

        Raises:
            RuntimeError: a node did not start, or the cluster could not be created.
        """
        started: list[RedisServer] = []
        try:
            for i in range(nodes):
                # --cluster-port: the bus port is otherwise PORT + 10000, taken or beyond 65535
                started.append(RedisServer.start(directory / f"node{i}", "--cluster-enabled", "yes",
                                                 "--cluster-config-file", "nodes.conf",
                                                 "--cluster-port", str(free_port())))
            create = subprocess.run(["redis-cli", "--cluster", "create",
                                     *(f"127.0.0.1:{n.port}" for n in started), "--cluster-yes"],
                                    capture_output=True, text=True, check=False)
            if create.returncode != 0 or "All 16384 slots covered" not in create.stdout:
                raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-400:]}{create.stderr[-400:]}")
            _wait_until_up(started)
        except BaseException:
            for node in started:
                node.stop()
            raise
        return cls(started)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "RedisCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_up(nodes: list[RedisServer]) -> None:
    """Until every node says ``cluster_state:ok``: the slots are assigned when ``redis-cli``
    returns, but each node declares the cluster up only once gossip has told it so (no event
    to wait for, so its state is looked at every :data:`CLUSTER_POLL_S`)."""
    deadline = time.monotonic() + CLUSTER_READY_S
    for node in nodes:
        client = redis.Redis(port=node.port)
        try:
            while client.cluster("INFO")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster was not up after {CLUSTER_READY_S:g} s")
                time.sleep(CLUSTER_POLL_S)
        finally:
            client.close()
