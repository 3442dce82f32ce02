"""Flow regulation (调流): concrete suggestions for each over-target service, and an
automatic mode that applies them within the hall's limits.

Pure: no I/O, no clock (the caller passes *now*), no trio. The server (suggestions in the
``cockpit``/``cockpit_update`` messages, the optional automatic mode) and the lobby
simulator (``callsys sim run --regulate``, ``callsys sim live --regulate``) share it.

The policy:

* **Who may take a service.** A window may be given the services some window of its zone
  serves by configuration (the hall's ``[regulation] scope``: ``"zone"``, the default — a
  tax clerk does tax matters —, ``"floor"`` or ``"hall"``).
* **The arithmetic** is the hall's one estimator's (:mod:`callsys.estimate`): a service's
  queue moves at ``rate`` calls per second (:meth:`~callsys.estimate.WaitEstimator.rate`,
  measured and blended with the configured rate) and a new ticket waits about
  ``waiting / rate``. An open window serving *k* services gives each ``1/k`` of a window,
  i.e. ``1 / (k * minutes * 60)`` calls per second. Adding service *S* to a window serving
  *k* services gives *S* ``1/(k+1)`` of it and takes ``1/k - 1/(k+1)`` from each of its
  other services; the waits after are the waits now scaled by ``rate / rate after``
  (``(waiting + 1) / rate after`` for a service nobody serves now).
* **Suggestions, per ``over_target`` alert** (worst wait against target first, greedily,
  each suggestion counting the ones before it): the open window (idle, calling or serving;
  not paused) that may take *S* and does not serve it yet is judged by its services' worst
  ``wait after / target``: the lowest is the least harmful. A window is suggested only if
  that figure stays below *S*'s own ``wait / target`` now — capacity moves towards the
  service worst off against its target, never away from it, so in a zone overloaded as a
  whole the waits even out against the targets. Ties go to the least loaded window (idle
  before calling before serving), then the lower id. The command is
  ``ReassignSkills`` with the window's skills plus *S* (appended: its own services stay
  first). Suggestions stop when *S*'s wait after is within target, or after
  :data:`MAX_PER_ALERT`. While *S* is still over target, closed windows that may take it
  are suggested to open, those with the fewest services first (more of the window goes to
  *S*), then the lower id (``OpenWindow``, preceded by a ``ReassignSkills`` to its configured
  skills plus *S* when those lack *S*), if the hall's ``open_windows`` allows: a closed window has no clerk
  until someone staffs it, so that is the manager's call.
* **Going home.** A window serving services its configuration does not give it returns to
  its configured skills (one ``ReassignSkills``) once those borrowed services are back
  under :data:`RELEASE_SHARE` of their target and its own services are not left without
  a window. Only the automatic mode does this by itself.
* **The automatic mode** (:class:`AutoRegulator`, the hall's ``[regulation]``): every
  ``check_every_min`` it applies the suggestions and the returns home, skipping any window
  moved ``max_moves_per_hour`` times in the last hour or less than ``min_stay_min`` ago
  (a move: one suggestion's commands on one window; :class:`Limits`). It counts its own
  moves only. ``sim live --regulate`` applies the server's own suggestions and returns home
  (the ``cockpit`` message) under the same :class:`Limits`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Iterable, Mapping

from . import commands as cmd
from .cockpit import CALLING, IDLE, OVER_TARGET, SERVING, Cockpit, WindowView
from .hall import Hall, Regulation
from .state import CLOSED, HallState

MAX_PER_ALERT: Final = 6  # suggestions per over-target alert, at most
RELEASE_SHARE: Final = 0.5  # a borrowed service below this share of its target lets its window go home
HOUR_S: Final = 3600.0  # the span of the per-window move limit (s)
REASSIGN: Final = "reassign"
OPEN: Final = "open"
HOME: Final = "home"
_LOAD: Final = {IDLE: 0, CALLING: 1, SERVING: 2}


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One thing a manager can do about an alert, with the exact commands it applies.

    Attributes:
        alert: the alert's id (``over_target:<code>``); ``None`` for a return home.
        service: the service it helps (the borrowed one, for a return home).
        window: the window moved.
        action: :data:`REASSIGN`, :data:`OPEN` or :data:`HOME`.
        skills: the window's services after.
        commands: the engine commands, in order (their ``at`` is the *now* asked at).
        wait_before_s: the service's estimated wait now (None: nobody serves it).
        wait_after_s: its estimated wait after this suggestion and the ones before it.
        reason: one line for the manager.
    """

    alert: str | None
    service: str
    window: int
    action: str
    skills: tuple[str, ...]
    commands: tuple[cmd.Command, ...]
    wait_before_s: float | None
    wait_after_s: float | None
    reason: str

    def to_message(self) -> dict[str, Any]:
        """The suggestion in a ``cockpit``/``cockpit_update`` message: ``commands`` are the
        manager messages that apply it, exactly as a manager sends them."""
        return {"alert": self.alert, "service": self.service, "window": self.window, "action": self.action,
                "skills": list(self.skills), "commands": [command_message(c) for c in self.commands],
                "wait_before_s": self.wait_before_s, "wait_after_s": self.wait_after_s, "reason": self.reason}


def command_message(command: cmd.Command) -> dict[str, Any]:
    """The WebSocket message a manager sends for *command* (``reassign`` / ``open_window``)."""
    if isinstance(command, cmd.ReassignSkills):
        return {"type": command.kind, "window": command.window, "skills": list(command.skills)}
    if isinstance(command, cmd.OpenWindow):
        return {"type": command.kind, "window": command.window}
    raise TypeError(f"the regulator does not send {command.kind!r}")


def scope_of(hall: Hall, scope: str | None = None) -> dict[int, frozenset[str]]:
    """Window id -> the services it may be given (see the module docstring)."""
    scope = scope or hall.regulation.scope
    def key(w):
        return w.zone if scope == "zone" else w.floor if scope == "floor" else None
    served: dict[Any, set[str]] = {}
    for w in hall.windows:
        served.setdefault(key(w), set()).update(w.skills)
    return {w.id: frozenset(served[key(w)]) for w in hall.windows}


class Regulator:
    """The suggestions for one hall (the scope is worked out once).

    Args:
        hall: the hall.
        policy: the regulation policy (the hall's ``[regulation]`` by default).
    """

    def __init__(self, hall: Hall, policy: Regulation | None = None) -> None:
        self.hall = hall
        self.policy = policy or hall.regulation
        self.scope = scope_of(hall, self.policy.scope)
        self.takers: dict[str, tuple[int, ...]] = {}  # service -> the windows that may take it
        for wid, codes in self.scope.items():
            for code in codes:
                self.takers[code] = self.takers.get(code, ()) + (wid,)
        self.home = {w.id: w.skills for w in hall.windows}
        self.minutes = {s.code: s.minutes for s in hall.services}
        self.targets = {s.code: s.target_wait_s for s in hall.services}

    def suggest(self, cockpit: Cockpit, state: HallState, now: float,
                allowed: Callable[[int], bool] = lambda window: True) -> dict[str, tuple[Suggestion, ...]]:
        """The suggestions for each ``over_target`` alert of *cockpit*, by alert id.

        Args:
            cockpit: the hall now (:func:`callsys.cockpit.build`).
            state: the engine's state it was built from (read only: the measured rates).
            now: the ``at`` of the commands.
            allowed: which windows may be moved (the automatic mode's limits).
        """
        model = _Model(self, cockpit, state)
        alerts = [a for a in cockpit.alerts if a.kind == OVER_TARGET and a.service in self.targets]
        alerts.sort(key=lambda a: -model.ratio(a.service))
        out: dict[str, tuple[Suggestion, ...]] = {}
        for alert in alerts:
            picks: list[Suggestion] = []
            code = alert.service
            while len(picks) < MAX_PER_ALERT and model.over(code):
                pick = model.best_reassign(code, allowed)
                if pick is None:
                    break
                picks.append(model.take(alert.id, code, pick, REASSIGN, now))
            while len(picks) < MAX_PER_ALERT and self.policy.open_windows and model.over(code):
                pick = model.best_open(code, allowed)
                if pick is None:
                    break
                picks.append(model.take(alert.id, code, pick, OPEN, now))
            out[alert.id] = tuple(picks)
        return out

    def homecomings(self, cockpit: Cockpit, state: HallState, now: float,
                    allowed: Callable[[int], bool] = lambda window: True) -> list[Suggestion]:
        """Windows serving borrowed services that may go back to their configured skills."""
        model = _Model(self, cockpit, state)
        out = []
        for w in cockpit.windows:
            home = self.home[w.id]
            borrowed = [c for c in w.skills if c not in home]
            if w.state == CLOSED or not borrowed or not allowed(w.id):
                continue
            if any(model.wait(c) is None or model.wait(c) > RELEASE_SHARE * self.targets[c] for c in borrowed):
                continue
            if any(model.servers.get(c, 0) <= 1 for c in borrowed):
                continue  # the last open window serving it stays
            out.append(model.take(None, borrowed[0], (w, home), HOME, now))
        return out


class _Model:
    """The waits and window shares of one look, changed as suggestions are taken."""

    def __init__(self, regulator: Regulator, cockpit: Cockpit, state: HallState) -> None:
        self.r = regulator
        self.windows = {w.id: w for w in cockpit.windows}
        self.skills = {w.id: w.skills for w in cockpit.windows}
        self.used: set[int] = set()
        self.waiting = {s.code: s.waiting for s in cockpit.services}
        self.before = {s.code: s.estimated_wait_s for s in cockpit.services}
        self.servers = {s.code: s.windows_open for s in cockpit.services}
        self.rate0 = {s.code: state.eta.rate(s.code) for s in cockpit.services}
        self.rate = dict(self.rate0)

    def wait(self, code: str, rate: float | None = None) -> float | None:
        """The estimated wait of a new ticket of *code* with the suggestions taken so far (at
        *rate* calls per second instead of the current one, when given)."""
        rate = self.rate[code] if rate is None else rate
        before = self.before[code]
        if rate <= 0.0:
            return None if self.waiting[code] else 0.0
        if before is None or self.rate0[code] <= 0.0:
            return (self.waiting[code] + 1) / rate
        return before * self.rate0[code] / rate

    def ratio(self, code: str) -> float:
        wait = self.wait(code)
        return float("inf") if wait is None else wait / self.r.targets[code]

    def over(self, code: str) -> bool:
        wait = self.wait(code)
        return self.waiting[code] > 0 if wait is None else wait > self.r.targets[code]

    def _share(self, code: str, windows: float) -> float:
        return windows / (self.r.minutes[code] * 60.0)

    def _gain(self, skills: tuple[str, ...], new: tuple[str, ...], active: bool) -> dict[str, float]:
        """Rate change per service when a window goes from *skills* (active or not) to *new*, open."""
        delta: dict[str, float] = {}
        for code in new:
            delta[code] = self._share(code, 1.0 / len(new))
        if active:
            for code in skills:
                delta[code] = delta.get(code, 0.0) - self._share(code, 1.0 / len(skills))
        return delta

    def _after(self, delta: Mapping[str, float]) -> dict[str, float | None]:
        saved = {c: self.rate[c] for c in delta}
        for c, d in delta.items():
            self.rate[c] = max(0.0, self.rate[c] + d)
        after = {c: self.wait(c) for c in delta}
        self.rate.update(saved)
        return after

    def best_reassign(self, code: str, allowed: Callable[[int], bool]) -> tuple[WindowView, tuple[str, ...]] | None:
        best = None
        bar = self.ratio(code)  # the move must leave its window's services better off than *code* is now
        for wid in self.r.takers.get(code, ()):
            w, skills = self.windows[wid], self.skills[wid]
            if w.state not in _LOAD or wid in self.used or code in skills or not allowed(wid):
                continue
            new = skills + (code,)
            k = len(skills)
            worst = 0.0
            for c in skills:  # each of its services keeps 1/(k+1) of the window instead of 1/k
                wait = self.wait(c, max(0.0, self.rate[c] - self._share(c, 1.0 / k - 1.0 / (k + 1))))
                worst = max(worst, float("inf") if wait is None else wait / self.r.targets[c])
                if worst >= bar:
                    break
            if worst < bar:
                key = (worst, _LOAD[w.state], wid)
                if best is None or key < best[0]:
                    best = (key, w, new)
        return None if best is None else (best[1], best[2])

    def best_open(self, code: str, allowed: Callable[[int], bool]) -> tuple[WindowView, tuple[str, ...]] | None:
        best = None
        for wid in self.r.takers.get(code, ()):
            w = self.windows[wid]
            if w.state == CLOSED and wid not in self.used and allowed(wid):
                home = self.r.home[wid]
                new = home if code in home else home + (code,)
                key = (len(new), wid)  # the fewer services it has, the more of it goes to *code*
                if best is None or key < best[0]:
                    best = (key, w, new)
        return None if best is None else (best[1], best[2])

    def take(self, alert: str | None, code: str, pick: tuple[WindowView, tuple[str, ...]], action: str,
             now: float) -> Suggestion:
        w, new = pick
        skills = self.skills[w.id]
        before = self.wait(code)
        delta = self._gain(skills, new, w.state != CLOSED)
        effects = self._after(delta)
        for c, d in delta.items():
            self.rate[c] = max(0.0, self.rate[c] + d)
        self.servers[code] = self.servers.get(code, 0) + (1 if action != HOME else -1)
        self.skills[w.id] = new
        self.used.add(w.id)
        commands: tuple[cmd.Command, ...] = ()
        if new != skills:
            commands += (cmd.ReassignSkills(now, w.id, new),)
        if action == OPEN:
            commands += (cmd.OpenWindow(now, w.id),)
        after = effects.get(code)
        others = ", ".join(f"{c} {_min(effects[c])}" for c in skills if c != code and c in effects)
        if action == HOME:
            reason = f"window {w.id} back to its own services {'/'.join(new)}: {code} is at {_min(before)}"
        elif action == OPEN:
            reason = f"open window {w.id} for {code}: its wait {_min(before)} -> {_min(after)} (target {_min(self.r.targets[code])})"
        else:
            reason = (f"window {w.id} ({w.state}) also takes {code}: its wait {_min(before)} -> {_min(after)} "
                      f"(target {_min(self.r.targets[code])}); its own {others or '-'} after")
        return Suggestion(alert, code, w.id, action, new, commands, before, after, reason)


def _min(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


@dataclass(slots=True)
class Limits:
    """The hall's limits on moving one window: at most ``max_moves_per_hour`` moves in any
    hour, and ``min_stay_s`` between two moves. State: each window's recent moves."""

    policy: Regulation
    moves: dict[int, deque] = field(default_factory=dict)  # window -> times of its moves in the last hour

    def allowed(self, window: int, now: float) -> bool:
        """Whether *window* may be moved at *now*."""
        times = self.moves.get(window)
        if not times:
            return True
        while times and now - times[0] >= HOUR_S:
            times.popleft()
        if len(times) >= self.policy.max_moves_per_hour:
            return False
        return not times or now - times[-1] >= self.policy.min_stay_s

    def admit(self, window: int, now: float) -> bool:
        """Count a move of *window* at *now* if it is allowed; whether it was."""
        if not self.allowed(window, now):
            return False
        self.moves.setdefault(window, deque()).append(now)
        return True


@dataclass(slots=True)
class AutoRegulator:
    """The automatic mode: the commands to apply at *now*, within the hall's limits.

    Feed it the cockpit every ``policy.every_s`` (the server and the simulator do) and
    execute what it returns. It counts its own moves only.

    Args:
        hall: the hall.
        policy: the limits (the hall's ``[regulation]`` by default).
    """

    hall: Hall
    policy: Regulation | None = None
    limits: Limits = field(init=False)
    regulator: Regulator = field(init=False)

    def __post_init__(self) -> None:
        self.policy = self.policy or self.hall.regulation
        self.limits = Limits(self.policy)
        self.regulator = Regulator(self.hall, self.policy)

    def step(self, cockpit: Cockpit, state: HallState, now: float) -> list[cmd.Command]:
        """The commands to apply at *now*: every suggestion, then the returns home."""
        allowed = lambda window: self.limits.allowed(window, now)  # noqa: E731
        picks = [s for group in self.regulator.suggest(cockpit, state, now, allowed).values() for s in group]
        moved = {s.window for s in picks}
        picks += [s for s in self.regulator.homecomings(cockpit, state, now, allowed) if s.window not in moved]
        out: list[cmd.Command] = []
        for s in picks:
            if s.commands and self.limits.admit(s.window, now):
                out.extend(s.commands)
        return out


def suggestions_message(suggestions: Mapping[str, Iterable[Suggestion]]) -> dict[str, list[dict[str, Any]]]:
    """``{alert id: [suggestion, ...]}`` as sent in ``cockpit``/``cockpit_update``."""
    return {alert: [s.to_message() for s in group] for alert, group in suggestions.items()}
