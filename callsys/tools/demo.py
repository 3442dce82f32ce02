"""``callsys demo`` (``make demo``): the flagship hall at opening time, with a live crowd.

Whatever the hour, a newcomer should see the hall working: this starts ``callsys serve``
on a virtual clock set :data:`LEAD_MIN` minutes before the hall's first opening on a
weekday (today if today is one, else the next; computed from the hall file's hours), then
plays the scenario's crowd against it with ``callsys sim live`` — kiosks, phones, a clerk
per staffed window, LEDs, TVs and speakers — so the pages fill and speak at once. The
store is fresh each time (``var/demo/``): a virtual day must not meet the events of an
earlier one. Ctrl-C (or either process ending) stops both: the crowd first, then the
server with its clean shutdown.
"""

from __future__ import annotations

import argparse
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from ..cli import command
from ..errors import CallsysError
from ..hall import Hall, load_hall

SCENARIO: Final = "qingdao-weekday"  # sim/scenarios/: an ordinary weekday's crowd at the flagship hall
HALL_FILE: Final = "config/qingdao.toml"  # the scenario's hall
SPEED: Final = 5.0  # virtual seconds per real second: a call every few seconds per zone, a day in ~1.7 h
LEAD_MIN: Final = 1  # virtual minutes between the start and the opening
DEMO_DIR: Final = "var/demo"  # the demo's store and simulator output, emptied at every start
MARKER: Final = ".callsys-demo"  # the file that marks a directory as the demo's own (so it may be emptied)
INDEX_LINE: Final = re.compile(r"\s+index\s+http://\S+:(\d+)/\s*$")  # in the pages ``callsys serve`` prints
STOP_WAIT_S: Final = 10.0  # real seconds each process gets to stop after Ctrl-C before it is killed


class DemoError(CallsysError):
    """The demo cannot start as asked. The fault is the caller's."""

    code = "demo_error"


@command("demo", help="the flagship hall just before opening on a virtual clock, with a live crowd (make demo)")
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=HALL_FILE, help="hall file (default: %(default)s)")
    p.add_argument("--scenario", default=SCENARIO, help="crowd to play, from sim/scenarios/ (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8700, help="TCP port, 0 = any free (default: %(default)s)")
    p.add_argument("--speed", type=float, default=SPEED, help="virtual seconds per real second (default: %(default)s)")
    p.add_argument("--clock", help="virtual start in the hall's zone, e.g. 2026-11-25T08:59 "
                                   f"(default: {LEAD_MIN} min before the next weekday's opening)")
    p.add_argument("--dir", default=DEMO_DIR,
                   help="the demo's own directory (store, simulator output), emptied at every start; "
                        "must be new or an earlier demo's (default: %(default)s)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                   help="the server's log level (default: %(default)s: a line per connection would flood the terminal)")
    p.set_defaults(run=_demo)


def demo_start(hall: Hall, now: datetime) -> datetime:
    """:data:`LEAD_MIN` minutes before the first session of *now*'s date in the hall's zone,
    or of the next weekday (Monday-Friday) the hall opens on."""
    local = now.astimezone(hall.tz)
    for days in range(14):
        date = (local + timedelta(days=days)).date()
        sessions = hall.hours.sessions(date.weekday())
        if date.weekday() < 5 and sessions:
            opening = datetime(date.year, date.month, date.day, tzinfo=hall.tz) + timedelta(minutes=sessions[0][0])
            return opening - timedelta(minutes=LEAD_MIN)
    raise DemoError(f"hall {hall.id!r} never opens on a weekday")


def _demo(args: argparse.Namespace) -> int:
    hall = load_hall(args.config)
    start = args.clock or demo_start(hall, datetime.now(hall.tz)).strftime("%Y-%m-%dT%H:%M")
    store_dir = _fresh_dir(Path(args.dir))
    callsys = [sys.executable, "-m", "callsys"]
    serve = callsys + ["serve", "--config", args.config, "--store", f"file:{store_dir / 'callsys.db'}",
                       "--host", args.host, "--port", str(args.port), "--clock", start, "--speed", f"{args.speed:g}",
                       "--log-level", args.log_level]
    day_s = 24 * 3600 / args.speed  # real seconds of a whole virtual day: play until Ctrl-C
    print(f"demo: {hall.name.en} from {start} (hall time) at {args.speed:g}x; Ctrl-C stops", flush=True)
    # The children run in sessions of their own: Ctrl-C reaches this process only, which
    # stops each child once, the crowd first (SIGTERM: a load generator has nothing to save),
    # then the server (SIGINT: its clean shutdown). Handled here, not ignored, so that the
    # children start with the default dispositions even if this process was started ignoring them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    players: list[subprocess.Popen] = []
    try:
        port = _forward_output(server)
        if port is None:
            return server.wait() or 1
        url = f"ws://{args.host}:{port}/ws"
        live = callsys + ["sim", "live", args.scenario, "--url", url, "--speed", f"{args.speed:g}",
                          "--duration", f"{day_s:g}", "--out", str(store_dir / "sim")]
        players.append(subprocess.Popen(live, start_new_session=True))
        while server.poll() is None and players[0].poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("demo: stopping", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C (or make passing one on) must not cut this short
        for player in players:
            _stop(player, signal.SIGTERM)
        _stop(server, signal.SIGINT)
    return 0


def _fresh_dir(path: Path) -> Path:
    """*path*, emptied: a virtual day must not meet the events of an earlier one.

    Raises:
        DemoError: *path* holds files but is not an earlier demo's directory.
    """
    if path.exists():
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise DemoError(f"{path} is not a directory of callsys demo (no {MARKER} in it); choose another --dir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("emptied by every `callsys demo --dir` run\n")
    return path


def _forward_output(server: subprocess.Popen) -> int | None:
    """Copy *server*'s standard output to ours (in a thread, for as long as it runs) and
    return its port once it printed its pages (it listens then); None if it exited first."""
    ports: queue.Queue[int | None] = queue.Queue()

    def forward() -> None:
        for line in server.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if found := INDEX_LINE.match(line):
                ports.put(int(found.group(1)))
        ports.put(None)

    threading.Thread(target=forward, name="server-output", daemon=True).start()
    return ports.get()


def _stop(process: subprocess.Popen, signum: int) -> None:
    if process.poll() is None:
        process.send_signal(signum)
    try:
        process.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

