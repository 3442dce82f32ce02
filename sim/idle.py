"""Idle windows by service: who to wake when a ticket becomes callable.

With 400 windows, polling every window on every arrival is waste. A window that found
nobody to call registers here under each service it serves; a new ticket for a service
wakes one of that service's idle windows, chosen by a policy function
(:func:`sim.models.longest_idle` by default). Both the virtual-time runner and the live
player use it.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from .models import WindowPicker, longest_idle


class IdleWindows:
    """The idle windows of a hall, indexed by the services they serve.

    Args:
        skills: window id -> the services it serves.
        pick: which of a service's idle windows to wake.
    """

    def __init__(self, skills: Mapping[int, tuple[str, ...]], pick: WindowPicker = longest_idle) -> None:
        self.skills = skills
        self.pick = pick
        self.by_service: dict[str, dict[int, float]] = {code: {} for codes in skills.values() for code in codes}
        self.windows: set[int] = set()

    def __contains__(self, window: int) -> bool:
        return window in self.windows

    def __iter__(self) -> Iterator[int]:
        return iter(self.windows)

    def add(self, window: int, since: float) -> None:
        """*window* found nobody to call at *since*."""
        self.windows.add(window)
        for code in self.skills[window]:
            self.by_service[code][window] = since

    def discard(self, window: int) -> None:
        """*window* is busy, paused or closed now (no-op if it was not idle)."""
        if window in self.windows:
            self.windows.discard(window)
            for code in self.skills[window]:
                del self.by_service[code][window]

    def reassign(self, window: int, skills: tuple[str, ...]) -> None:
        """*window* serves *skills* from now on (a manager's ``reassign``); idle, it stays idle."""
        since = None
        if window in self.windows:
            since = next(self.by_service[code][window] for code in self.skills[window])
            self.discard(window)
        self.skills[window] = tuple(skills)  # type: ignore[index]  # the runner's own dict
        for code in skills:
            self.by_service.setdefault(code, {})
        if since is not None:
            self.add(window, since)

    def take(self, service: str) -> int | None:
        """An idle window serving *service*, no longer idle; None if there is none."""
        idle = self.by_service.get(service)
        if not idle:
            return None
        window = self.pick(idle, service)
        self.discard(window)
        return window

    def serving(self, service: str) -> Mapping[int, float]:
        """The idle windows serving *service* (window -> idle since)."""
        return self.by_service.get(service, {})

    def clear(self) -> None:
        self.windows.clear()
        for idle in self.by_service.values():
            idle.clear()
