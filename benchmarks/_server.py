"""A callsys server in a child process (``python -m callsys serve``), for benchmarks and
crash tests: the load generator and the server then share the machine's cores honestly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import AsyncIterator, Sequence

import trio


@dataclass(frozen=True, slots=True)
class ServerProcess:
    process: trio.Process
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


async def spawn_server(nursery: trio.Nursery, args: Sequence[str],
                       log: list[tuple[float, str]] | None = None) -> ServerProcess:
    """Start ``python -m callsys serve ARGS`` (include ``--port 0``); return once it listens.

    The server's log lines are read in *nursery* so its stderr never fills up: dropped, or
    appended to *log* as ``(time.monotonic() when read, line)``.
    """
    argv = [sys.executable, "-m", "callsys", "serve", *args]
    process = await nursery.start(partial(trio.run_process, argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, check=False))
    lines = _lines(process.stderr)
    async for line in lines:
        if log is not None:
            log.append((time.monotonic(), line))
        if "event=listening" in line:
            nursery.start_soon(_drain, lines, log)
            return ServerProcess(process, line.split("url=", 1)[1].split()[0])
    raise RuntimeError(f"the server exited with {await process.wait()} before listening")


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode(errors="replace")


async def _drain(lines: AsyncIterator[str], log: list[tuple[float, str]] | None) -> None:
    async for line in lines:
        if log is not None:
            log.append((time.monotonic(), line))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process *pid* (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
