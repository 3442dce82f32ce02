"""A throw-away ``redis-server`` for benchmarks and tests: a free port, a temporary
directory, the durability callsys's Redis store demands (``--appendonly yes --appendfsync
always``), and nothing saved outside that directory.

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
from pathlib import Path
from typing import Final

import redis

REDIS_SERVER: Final = "redis-server"
READY: Final = b"Ready to accept connections"  # redis-server's log line once it serves clients
START_ATTEMPTS: Final = 3  # tries with another free port when the chosen one was taken meanwhile


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1 whose files live in *directory*."""

    def __init__(self, directory: Path, port: int, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.port = port
        self.extra = extra
        self.process: subprocess.Popen | None = None
        self.output: list[bytes] = []

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, *extra: str) -> "RedisServer":
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
            server = cls(directory, free_port(), extra)
            try:
                server._spawn()
                return server
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1 or b"Address already in use" not in b"".join(server.output):
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "",
                "--daemonize", "no", *self.extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in self.process.stdout:  # until ready, or EOF when it exits
            self.output.append(line)
            if READY in line:
                break
        else:
            self.process.wait()
            raise RuntimeError(f"redis-server exited with {self.process.returncode} before it was ready: "
                               + b"".join(self.output[-5:]).decode(errors="replace"))
        self.process.stdout.close()  # nothing reads it from here on; redis-server ignores SIGPIPE
        client = redis.Redis(port=self.port)
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
