"""The lobby simulator: the real engine driven by modelled citizens and clerks.

* :mod:`sim.scenario` — scenario files (``sim/scenarios/*.toml``) -> :class:`Scenario`
* :mod:`sim.models` — arrivals, channels, service times, patience, walking, policies
* :mod:`sim.runner` — the virtual-time discrete-event runner (:class:`Simulation`)
* :mod:`sim.tracker` / :mod:`sim.metrics` / :mod:`sim.charts` — records, figures, PNGs
* :mod:`sim.theory` — Erlang C, offered load; :mod:`sim.experiment` — replications, Student's t margins
* :mod:`sim.planner` — fewest windows per zone or service for a wait target, or the best allocation of at most M windows
* :mod:`sim.live` — live load mode against a running server (imports trio and the client)
* :mod:`sim.cli` — ``callsys sim run|plan|live``

See ``docs/simulator.md``.
"""

from .planner import Planner as Planner, parse_target as parse_target
from .runner import Kind as Kind, Simulation as Simulation, simulate as simulate
from .scenario import Scenario as Scenario, load_scenario as load_scenario
from .theory import MMc as MMc, erlang_c as erlang_c
