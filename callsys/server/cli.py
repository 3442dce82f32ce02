"""``callsys serve``: run the server on a hall file and a store until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import secrets
import signal
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import trio

from ..cli import bounded, command
from ..clock import parse_clock
from ..errors import CallsysError
from ..hall import load_hall
from ..network import load_network
from . import logs
from .http import page_urls
from .limits import parse_networks
from .loopwatch import LoopWatch
from .network import network_block, serve_network
from .serve import serve_callsys
from .settings import (DEFAULT_HOST, DEFAULT_PORT, HANDSHAKE_TIMEOUT_S, HELLO_FAILURE_WINDOW_S, HELLO_FAILURES,
                       IDLE_TIMEOUT_S, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, MAX_FRAME_BYTES, RATE_BURST,
                       RATE_PER_S, TRUSTED_PROXIES, ServerSettings)

SECRET_ENV = "CALLSYS_SECRET"
REDIS_SECRET_FILE = "var/callsys.secret"  # the phone-secret key's file when the store has no path of its own
SPARE_FILES = 64  # file descriptors beyond the connections: the store, its WAL, the listeners, logs


@command("serve", help="run the server: WebSocket /ws and the HTTP pages on one port")
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--store", default="file:var/callsys.db",
                   help="event store URL: file:PATH (SQLite), redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS), "
                        "unix:///PATH.sock?db=DB, redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE/DB or "
                        "redis+cluster://HOST:PORT[,HOST:PORT]; Redis must run with appendonly yes and "
                        "appendfsync always. On Redis the first server of a hall owns it (a lease); any other "
                        "is a hot standby that follows it, serves its displays and phones, forwards commands to "
                        "the owner, and takes over within ~2 s when the owner dies (default: %(default)s)")
    p.add_argument("--network", metavar="FILE",
                   help="serve a network of halls instead of one hall file, e.g. config/baoan.toml (--config is "
                        "then not used): this process joins the network's processes on the --store Redis, serves "
                        "its share of the halls (rebalanced as processes come and go) and routes every hall on "
                        "--port at /halls/HALL_ID/ (pages, API, WebSocket /halls/HALL_ID/ws); GET /halls lists "
                        "the halls and their owners. See callsys/server/network.py")
    p.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port, 0 = any free (default: %(default)s)")
    p.add_argument("--advertise", type=_advertised, metavar="URL",
                   help="on a Redis store: the WebSocket URL other processes of the hall forward their clients' "
                        "commands to while this one owns it, e.g. ws://hall-a.example:8000/ws (default: "
                        "ws://HOST:PORT/ws from --host and --port, this machine's name when --host is 0.0.0.0)")
    p.add_argument("--clock", default="real",
                   help="'real', or a virtual start time in the hall's zone, e.g. 2026-11-23T09:05")
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second (with --clock TIME)")
    p.add_argument("--secret-file", help="key for phone secrets (default: STORE_PATH.secret for a file: store, "
                                         f"{REDIS_SECRET_FILE} for a Redis store; created if missing; "
                                         f"${SECRET_ENV} overrides)")
    p.add_argument("--max-frame-bytes", type=int, default=MAX_FRAME_BYTES, help="largest frame (default: %(default)s)")
    p.add_argument("--rate", type=float, default=RATE_PER_S, help="messages/s per connection (default: %(default)s)")
    p.add_argument("--burst", type=int, default=RATE_BURST, help="burst per connection (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, help="seconds (default: %(default)s)")
    p.add_argument("--handshake-timeout", type=bounded(float, 0, above=True), default=HANDSHAKE_TIMEOUT_S,
                   help="seconds from TCP accept to the head of the first request, WebSocket upgrade or HTTP "
                        "(default: %(default)s)")
    p.add_argument("--max-connections", type=bounded(int, 0, above=True), default=MAX_CONNECTIONS,
                   help="open connections at most; more are refused with HTTP 503 (default: %(default)s)")
    p.add_argument("--max-connections-per-address", type=bounded(int, 0, above=True), default=MAX_CONNECTIONS_PER_ADDRESS,
                   help="open connections from one address (IPv6: one /64) at most (default: %(default)s)")
    p.add_argument("--trusted-proxies", type=_networks, default=TRUSTED_PROXIES, metavar="ADDRS",
                   help="comma-separated addresses or networks of gateways/reverse proxies that many clients come "
                        "through: exempt from the per-address cap and the failed-hello throttle; '' for none "
                        f"(default: {','.join(TRUSTED_PROXIES)})")
    p.add_argument("--hello-failures", type=bounded(int, 0, above=True), default=HELLO_FAILURES,
                   help="failed hellos from one address within --hello-window before it is refused "
                        "(default: %(default)s)")
    p.add_argument("--hello-window", type=bounded(float, 0, above=True), default=HELLO_FAILURE_WINDOW_S,
                   help="seconds a failed hello counts against its address (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default="kv", choices=("kv", "json"), help="key=value or JSON lines")
    p.set_defaults(run=_serve)


def _advertised(text: str) -> str:
    """``--advertise``: a ws:// or wss:// URL with a host."""
    scheme, sep, rest = text.partition("://")
    if scheme not in ("ws", "wss") or not sep or not rest.split("/", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a WebSocket URL: give ws://HOST:PORT/ws "
                                         "(or wss:// behind TLS)")
    return text


def _serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    network = load_network(args.network) if args.network is not None else None
    hall = network.halls[0] if network is not None else load_hall(args.config)
    clock = parse_clock(args.clock, speed=args.speed, tz=hall.tz)
    settings = ServerSettings(max_frame_bytes=args.max_frame_bytes, rate_per_s=args.rate, rate_burst=args.burst,
                              idle_timeout_s=args.idle_timeout, handshake_timeout_s=args.handshake_timeout,
                              max_connections=args.max_connections,
                              max_connections_per_address=args.max_connections_per_address,
                              trusted_proxies=args.trusted_proxies, hello_failures=args.hello_failures,
                              hello_failure_window_s=args.hello_window, manage_gc=True)
    _raise_open_files(settings.max_connections + SPARE_FILES)
    reserve_descriptor_table(settings.max_connections + SPARE_FILES)
    if network is not None:  # each hall's server is one of many in this process: no process-wide GC policy
        serve = partial(serve_network, network, args.store, host=args.host, port=args.port, clock=clock,
                        secret=load_secret(args.store, args.secret_file), settings=replace(settings, manage_gc=False))
        _run(serve, [], network_block)
        return 0
    watch = LoopWatch()  # stall figures for `stats` and the `stopped` line (see callsys.server.loopwatch)
    serve = partial(serve_callsys, hall, args.store, host=args.host, port=args.port, clock=clock,
                    secret=load_secret(args.store, args.secret_file), settings=settings, loop_watch=watch,
                    advertise=args.advertise)
    _run(serve, [watch], pages_block)
    return 0


def _run(serve: partial, instruments: list[Any], banner: Callable[[Any], str]) -> None:
    try:
        trio.run(_run_until_signal, serve, banner, instruments=instruments)
    except BaseExceptionGroup as group:  # one failure out of the nurseries: report it plainly
        inner = _single(group)
        if isinstance(inner, CallsysError):
            raise inner from None
        raise


def _networks(text: str) -> tuple[str, ...]:
    specs = tuple(s.strip() for s in text.split(",") if s.strip())
    try:
        parse_networks(specs)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return specs


def _raise_open_files(wanted: int) -> None:
    """Raise the soft open-file limit towards *wanted* (one descriptor per connection), or warn.

    Below it, connections past the limit are not refused with 503: accept() fails and
    they wait in the kernel's backlog.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logs.log(logging.WARNING, "open_files_limit", limit=soft, wanted=wanted,
                 message="the open-file limit is below --max-connections: raise it (ulimit -n, LimitNOFILE=) "
                         "or lower --max-connections")


def reserve_descriptor_table(count: int) -> None:
    """Grow the kernel's descriptor table of this process to *count* slots now, once.

    Linux grows a process's descriptor table by doubling when a new descriptor needs a
    higher slot; in a process with threads (the commit and speech threads) every growth
    waits for an RCU grace period inside that ``accept()``, which stopped the event loop
    for 10–28 ms at 1,024, 2,048, 4,096, 8,192 and 16,384 connections (measured in
    ``benchmarks.phones``; ``docs/performance.md``). The table never shrinks, so a
    descriptor duplicated into the top slot and closed again, before any thread starts,
    makes every later growth unnecessary. Best effort: nothing happens where it cannot.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = (count if soft == resource.RLIM_INFINITY else min(count, soft)) - 1
    try:
        os.fstat(top)
        return  # in use, so the table is that large already
    except OSError:
        pass
    try:
        os.dup2(sys.stderr.fileno(), top, inheritable=False)
        os.close(top)
    except (OSError, ValueError):
        pass


def _single(exc: BaseException) -> BaseException:
    """The error to report out of what the nurseries raised: the first callsys error in
    it (a failed store, say), else the lone exception inside single-member groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _single(inner)
            if isinstance(found, CallsysError):
                return found
        if len(exc.exceptions) == 1:
            return _single(exc.exceptions[0])
    return exc


async def _run_until_signal(serve: partial, banner: Callable[[Any], str]) -> None:
    """Run the server (or network node); the first SIGINT/SIGTERM starts a clean shutdown."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            servers = []

            async def run() -> None:
                servers.append(await nursery.start(serve))
                print(banner(servers[0]), flush=True)

            nursery.start_soon(run)
            async for signum in signals:
                logs.log(logging.INFO, "signal", signal=signal.Signals(signum).name)
                if servers:
                    servers[0].shutdown()
                else:  # still recovering, or a standby: nothing acknowledged to drain
                    nursery.cancel_scope.cancel()
                break


def pages_block(server: Any) -> str:
    """The URL of every page kind with a token of its role from the hall file: printed at
    start (on the operator's own terminal; copy them into a browser)."""
    urls = page_urls(server)
    width = max(map(len, urls))
    lines = [f"pages of {server.hall.name.en} (tokens from {server.hall.source or 'the hall file'}):"]
    lines += [f"  {name.ljust(width)}  {url}" for name, url in urls.items()]
    return "\n".join(lines)


def load_secret(store: str, path: str | None) -> bytes:
    """The phone-secret key: ``$CALLSYS_SECRET``, else the secret file (created with a random key):
    ``STORE_PATH.secret`` beside a ``file:`` store, :data:`REDIS_SECRET_FILE` for a Redis store
    (processes sharing a Redis must share the key: give them ``$CALLSYS_SECRET``)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    if path is None:
        scheme, _, rest = store.partition(":")
        path = rest + ".secret" if scheme == "file" else REDIS_SECRET_FILE
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return file.read_text().strip().encode()
