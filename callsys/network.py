"""A network of halls (one deployment, many halls) from one compact file: pure, no I/O but reading it.

A district's halls share most of their configuration: the opening hours, the policy, the
device tokens, the voice. A network file (``config/baoan.toml``) says it once and
describes the halls by kind rather than one by one::

    [network]               id and name of the network
    [defaults]              hall-file tables every hall starts from (hours, policy, tokens, voice, qr ...)
    [district]              the district hall: hall-file tables ([hall], [[services]], [[window_blocks]] ...)
    [street]                the template of a street hall (one per street of [layout])
    [community]             the template of a community hall (communities_per_street per street)
    [layout]                streets = [{id, zh, en}, ...], communities_per_street,
                            community_windows = [4, 5, ...] (window counts, cycled)

Expansion (:func:`network_from_mapping`): each hall's mapping is ``[defaults]`` deep-merged
with its own tables (tables merge key by key, the hall's value wins; arrays replace). In
the templates, ``{street}``, ``{street_zh}``, ``{street_en}`` and ``{n}`` (the community's
number within its street, from 1; ``{n:02}`` pads it) are replaced in every string — and
nothing else, so voice templates keep their own placeholders. A community template has
exactly one ``[[community.window_blocks]]``: its ``count`` is the community's window count,
``community_windows[k % len]`` for the k-th community hall of the network (from 0). Every
hall then goes through the same loader as a hall file (:func:`callsys.hall.hall_from_mapping`:
the same schema, the same rules); its ``source`` is ``FILE#HALL_ID``, so an error names the
network file and the hall. Hall ids must be unique across the network.

Tokens: a network's device tokens and API keys are those of ``[defaults]`` (one set for
every hall) unless a hall kind's tables set their own; the shipped ``config/baoan.toml``
uses the published demo tokens, so every hall warns about them at start like a hall file
with sample tokens does (replace them in ``[defaults.tokens]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pydantic import Field

from ._schema import NamesSpec, _Model
from .errors import ConfigError
from .hall import Hall, Names, hall_from_mapping, read_toml, validate

_PLACEHOLDER = re.compile(r"\{(street|street_zh|street_en|n)(?::(\d+))?\}")


class StreetSpec(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class LayoutSpec(_Model):
    streets: tuple[StreetSpec, ...] = Field(min_length=1)
    communities_per_street: int = Field(ge=0, le=100)
    community_windows: tuple[int, ...] = Field(default=(4,), min_length=1)


class NetworkSpec(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: NamesSpec


class NetworkFile(_Model):
    """A whole network file, as written (the hall tables inside are checked per hall)."""

    network: NetworkSpec
    layout: LayoutSpec
    defaults: dict[str, Any] = {}
    district: dict[str, Any]
    street: dict[str, Any]
    community: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Network:
    """The halls of one deployment.

    Attributes:
        id: the network's id (``baoan``): names its membership keys in Redis.
        name: its names.
        halls: every hall, the district hall first, then each street hall followed by its communities.
        kinds: hall id -> ``"district"``, ``"street"`` or ``"community"``.
        source: the file it came from.
    """

    id: str
    name: Names
    halls: tuple[Hall, ...]
    kinds: Mapping[str, str]
    source: str = ""

    def hall(self, hall_id: str) -> Hall | None:
        """The hall *hall_id*, or None if the network has no such hall."""
        return self._by_id.get(hall_id)

    @property
    def _by_id(self) -> dict[str, Hall]:
        return {h.id: h for h in self.halls}

    @property
    def windows(self) -> int:
        """Windows across the network."""
        return sum(len(h.windows) for h in self.halls)


def load_network(path: str | Path) -> Network:
    """Read and expand the network file at *path*.

    Raises:
        ConfigError: the file is missing or not TOML, its network tables are wrong, or a
            hall it describes breaks the hall schema or a rule (the message names the hall).
    """
    return network_from_mapping(read_toml(path), source=str(path))


def network_from_mapping(data: Mapping[str, Any], *, source: str = "<memory>") -> Network:
    """Validate and expand an already parsed network file (see the module docstring)."""
    spec = validate(NetworkFile, data, source)
    layout = spec.layout
    blocks = spec.community.get("window_blocks")
    if layout.communities_per_street and (not isinstance(blocks, list) or len(blocks) != 1):
        raise ConfigError(source, "community.window_blocks",
                          "a community template has exactly one [[community.window_blocks]] (its count is "
                          "set from layout.community_windows)")
    for i, count in enumerate(layout.community_windows):
        if not 1 <= count <= 1000:
            raise ConfigError(source, f"layout.community_windows[{i}]", f"must be 1 to 1000 windows (got {count})")
    halls: list[Hall] = []
    kinds: dict[str, str] = {}

    def add(kind: str, tables: Mapping[str, Any], where: str) -> None:
        mapping = _merge(spec.defaults, tables)
        hall_id = mapping.get("hall", {}).get("id") if isinstance(mapping.get("hall"), Mapping) else None
        hall = hall_from_mapping(mapping, source=f"{source}#{hall_id or where}")
        if hall.id in kinds:
            raise ConfigError(source, where, f"hall id {hall.id!r} is used twice in the network")
        halls.append(hall)
        kinds[hall.id] = kind

    add("district", spec.district, "district")
    k = 0
    for street in layout.streets:
        names = {"street": street.id, "street_zh": street.zh, "street_en": street.en}
        add("street", _fill(spec.street, names), f"street {street.id}")
        for n in range(1, layout.communities_per_street + 1):
            tables = _fill(spec.community, {**names, "n": n})
            block = dict(tables["window_blocks"][0])
            block["count"] = layout.community_windows[k % len(layout.community_windows)]
            tables["window_blocks"] = [block]
            add("community", tables, f"community {n} of street {street.id}")
            k += 1
    return Network(spec.network.id, Names(**spec.network.name.model_dump()), tuple(halls), kinds, source)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """*over* on top of *base*: tables merge key by key (recursively), anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _fill(value: Any, names: Mapping[str, Any]) -> Any:
    """*value* with the template placeholders of *names* replaced in every string inside it."""
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            found = names.get(match.group(1))
            if found is None:
                return match.group(0)  # {n} in a street template: left as written, the schema reports it
            width = match.group(2)
            return f"{found:0{int(width)}d}" if width and isinstance(found, int) else str(found)

        return _PLACEHOLDER.sub(one, value)
    if isinstance(value, Mapping):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value
