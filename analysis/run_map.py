"""The map of ``optbench analyze --map MAP.yaml``: where each field of a run comes from, for runs
optbench did not write (and, to rename or override a field, for those it did).

A map is a YAML list of blocks::

    - match: {project: foreign}          # optional: project, group, tag, name (globs, all must match)
      task: digits                       # a constant
      optimizer: {config: optimizer}     # the run's config at a key (dotted reaches into nested
      lr: {config: lr}                   #   dicts; a flat key holding dots is found too)
      batch_size: {config: batch_size}   # the effective batch size (samples per optimizer step)
      seed: {config: seed, default: 0}   # default: for the runs that lack the key
      max_steps: {config: max_steps, default: 200}
      step: trainer/global_step          # the history key that counts optimizer steps
      wall_time: _runtime                # the history key of training seconds
      metric: {key: val_acc, higher_is_better: true, target: 0.9}

Each of ``task``, ``optimizer``, ``lr``, ``batch_size``, ``seed``, ``max_steps``,
``metric.higher_is_better`` and ``metric.target`` is a constant, ``{config: KEY}`` or
``{summary: KEY}``, with an optional ``default`` (``default: null``: a run without the key has no
value, and that is no error); ``step``, ``wall_time`` and ``metric.key`` name history keys. A
block without ``match`` applies to every run; blocks apply in order, a later one's field over an
earlier one's; a field no block gives comes from what the run says by the conventions
(``analysis.conventions``).

Bad maps are one-line errors with a did-you-mean: an unknown field, a value of the wrong type
(``read_map``), and, once the runs are read, a ``match`` that matches none of them or a key that
none of the runs a block matches has (``check``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import yaml

from experiments.dotted_keys import flatten
from experiments.yaml_error import yaml_error

__all__ = ["RunMap", "Block", "Source", "Identity", "MapReport", "read_map", "parse_map", "check", "resolve",
           "convert", "lookup", "available_keys", "foreign_runs_help", "EXAMPLE", "FIELDS", "MATCH_KEYS",
           "HISTORY_FIELDS", "MISSING"]

MATCH_KEYS = ("project", "group", "tag", "name")
# Every field a block may set, with the type its values take ("history": a history key's name).
_TYPES: dict[str, str] = {
    "task": "text", "optimizer": "text", "lr": "number", "batch_size": "integer", "seed": "integer",
    "max_steps": "integer", "step": "history", "wall_time": "history",
    "metric.key": "history", "metric.higher_is_better": "boolean", "metric.target": "number",
}
FIELDS = tuple(_TYPES)
HISTORY_FIELDS = tuple(name for name, kind in _TYPES.items() if kind == "history")
_METRIC_KEYS = tuple(name.removeprefix("metric.") for name in FIELDS if name.startswith("metric."))
_BLOCK_KEYS = ("match", *(name for name in FIELDS if not name.startswith("metric.")), "metric")
_WHERE = ("config", "summary")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # what ``lookup`` returns for a key that is not there


@dataclass(frozen=True)
class Source:
    """Where one field's value comes from: a constant (``where`` None), or the run's config or
    summary at ``key``, else ``default`` (when ``has_default``)."""

    constant: Any = None
    where: Optional[str] = None
    key: str = ""
    default: Any = None
    has_default: bool = False

    def describe(self) -> str:
        if self.where is None:
            return repr(self.constant)
        return f"{{{self.where}: {self.key}}}"


@dataclass(frozen=True)
class Block:
    """One block of a map: the runs it applies to (``match``: key → glob) and its fields."""

    number: int  # 1-based, as messages name it
    match: dict[str, str]
    fields: dict[str, Source]

    def matches(self, identity: "Identity") -> bool:
        """Whether a run with ``identity`` is one this block applies to (every match key must)."""
        for key, pattern in self.match.items():
            values = identity.tags if key == "tag" else [getattr(identity, key)]
            if not any(value is not None and fnmatch.fnmatchcase(str(value), pattern) for value in values):
                return False
        return True


@dataclass(frozen=True)
class Identity:
    """What a ``match`` can select a run by (a run store's run: group = study, name = run_id)."""

    project: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunMap:
    """A parsed map: where it came from (for messages), its blocks, and a digest of its content
    (read runs are cached per map)."""

    origin: str
    blocks: tuple[Block, ...]
    digest: str

    def sources(self, identity: Identity) -> tuple[list[int], dict[str, tuple[int, Source]]]:
        """The numbers of the blocks that apply to a run, and per field the (block, source) that
        gives it: the last applying block that sets it."""
        applying = [block for block in self.blocks if block.matches(identity)]
        chosen = {name: (block.number, source) for block in applying for name, source in block.fields.items()}
        return [block.number for block in applying], chosen


@dataclass
class MapReport:
    """What applying the map to one run found, for ``check``: the blocks that matched it, the
    keys it lacked ((block, field, where, key), where is config, summary or history) and, where it
    lacked one, the keys it has (for the did-you-mean)."""

    identity: Identity
    blocks: list[int] = field(default_factory=list)
    misses: list[tuple[int, str, str, str]] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"identity": {"project": self.identity.project, "group": self.identity.group,
                             "name": self.identity.name, "tags": list(self.identity.tags)},
                "blocks": self.blocks, "misses": [list(m) for m in self.misses], "keys": self.keys}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MapReport":
        identity = Identity(**{**data["identity"], "tags": tuple(data["identity"]["tags"])})
        return cls(identity, list(data["blocks"]), [tuple(m) for m in data["misses"]], dict(data["keys"]))


def read_map(path: str | Path) -> RunMap:
    """Read and check the map file at ``path``; a bad one raises ``ValueError`` with one line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"no such map file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read map {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(yaml_error(path, error)) from None
    return parse_map(data, str(path))


def parse_map(data: Any, origin: str = "map") -> RunMap:
    """A map from its parsed YAML (``origin`` names it in messages)."""
    if not isinstance(data, list) or not data:
        got = "nothing" if data is None or data == [] else "a mapping" if isinstance(data, dict) else repr(data)
        raise ValueError(f"{origin}: expected a list of blocks, each '- match: ...' and its fields "
                         f"(optbench analyze --help shows one), got {got}")
    blocks = tuple(_block(entry, number, origin) for number, entry in enumerate(data, start=1))
    digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return RunMap(origin, blocks, digest)


def _unknown(kind: str, name: Any, valid: Sequence[str]) -> str:
    from analysis.conventions import CONFIG_NAMES
    from optimizers.did_you_mean import did_you_mean  # optimizers loads torch: only for the message

    alias = next((f for f, names in CONFIG_NAMES.items() if f in valid and name in names and name != f), None)
    hint = f" (did you mean {alias!r}?)" if alias else did_you_mean(name, valid)
    return f"unknown {kind} {name!r}{hint}; {kind}s: {', '.join(valid)}"


def _block(entry: Any, number: int, origin: str) -> Block:
    where = f"{origin}, block {number}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping of fields (task: ..., lr: {{config: lr}}), got {entry!r}")
    for name in entry:
        if name not in _BLOCK_KEYS:
            raise ValueError(f"{where}: {_unknown('field', name, _BLOCK_KEYS)}")
    match = entry.get("match") or {}
    if not isinstance(match, dict):
        raise ValueError(f"{where}, match: expected a mapping such as {{project: NAME}}, got {match!r}")
    for key, pattern in match.items():
        if key not in MATCH_KEYS:
            raise ValueError(f"{where}, match: {_unknown('match key', key, MATCH_KEYS)}")
        if not isinstance(pattern, (str, int, float)) or isinstance(pattern, bool):
            raise ValueError(f"{where}, match.{key}: expected a name or glob, got {pattern!r}")
    flat = {name: value for name, value in entry.items() if name not in ("match", "metric")}
    if "metric" in entry:
        metric = entry["metric"]
        if not isinstance(metric, dict):
            raise ValueError(f"{where}, metric: expected {{key: NAME, higher_is_better: true, target: 0.9}}, "
                             f"got {metric!r}")
        for key, value in metric.items():
            if key not in _METRIC_KEYS:
                raise ValueError(f"{where}, metric: {_unknown('metric key', key, _METRIC_KEYS)}")
            flat[f"metric.{key}"] = value
    return Block(number, {k: str(v) for k, v in match.items()},
                 {name: _source(value, _TYPES[name], f"{where}, {name}") for name, value in flat.items()})


def _source(value: Any, kind: str, where: str) -> Source:
    if kind == "history":
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: expected the name of a logged (history) key, got {value!r}")
        return Source(constant=value)
    if not isinstance(value, dict):
        return Source(constant=_constant(value, kind, where))
    spec_keys = (*_WHERE, "default")
    for key in value:
        if key not in spec_keys:
            raise ValueError(f"{where}: {_unknown('key', key, spec_keys)} "
                             f"(a value is a constant, {{config: KEY}} or {{summary: KEY}}, with an optional default)")
    places = [key for key in _WHERE if key in value]
    if len(places) != 1:
        raise ValueError(f"{where}: expected exactly one of config or summary, got {value!r}")
    key = value[places[0]]
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: expected a key name after {places[0]}:, got {key!r}")
    has_default = "default" in value
    default = value.get("default")
    if default is not None:
        default = _constant(default, kind, f"{where}, default")
    return Source(where=places[0], key=key, default=default, has_default=has_default)


def _constant(value: Any, kind: str, where: str) -> Any:
    converted = convert(value, kind)
    if converted is None:
        raise ValueError(f"{where}: expected {_KIND_WORDS[kind]}, got {value!r}")
    return converted


_KIND_WORDS = {"text": "a name", "number": "a number", "integer": "a whole number", "boolean": "true or false"}


def convert(value: Any, kind: str) -> Any:
    """``value`` as a field of ``kind`` (text, number, integer, boolean) takes it, or None when it
    cannot be one (a run's value that is none is as good as absent)."""
    if value is None or value is MISSING or isinstance(value, (dict, list)):
        return None
    if kind == "text":
        return str(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if kind == "integer" else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    if kind == "integer":
        return int(number) if number.is_integer() else None
    return number


def lookup(mapping: Mapping[str, Any], key: str) -> Any:
    """``mapping``'s value at ``key``: the flat key itself, else the dotted path through nested
    mappings; ``MISSING`` when neither is there."""
    if key in mapping:
        return mapping[key]
    node: Any = mapping
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def available_keys(mapping: Mapping[str, Any]) -> list[str]:
    """The keys ``lookup`` finds in ``mapping``: every dotted leaf and every top-level key."""
    return sorted(set(mapping) | set(flatten(mapping)))


def check(run_map: RunMap, reports: Iterable[MapReport]) -> None:
    """Raise ``ValueError`` (one line, with a did-you-mean) for the first block that matched no
    run, or the first key that none of the runs its block matched has."""
    reports = list(reports)
    for block in run_map.blocks:
        where = f"{run_map.origin}, block {block.number}"
        matched = [r for r in reports if block.number in r.blocks]
        if not matched:
            raise ValueError(f"{where}: match {_flow(block.match)} matches none of the {len(reports)} runs"
                             f"{_closest_identity(block.match, [r.identity for r in reports])}")
        for name, source in block.fields.items():
            where_key = _where_key(name, source)
            if where_key is None:
                continue
            place, key = where_key
            if all((block.number, name, place, key) in r.misses for r in matched):
                from optimizers.did_you_mean import did_you_mean  # loads torch: only for the message

                have = sorted({k for r in matched for k in r.keys.get(place, [])})
                hint = did_you_mean(key, have) or (f" (keys: {', '.join(have[:12])}{', ...' if len(have) > 12 else ''})"
                                                   if have else "")
                noun = "logged" if place == "history" else f"has {place} key"
                raise ValueError(f"{where}, {name}: none of the {len(matched)} runs it matches {noun} {key!r}{hint}")


def _where_key(name: str, source: Source) -> Optional[tuple[str, str]]:
    """Where a field's key is looked for, (config|summary|history, key); None for a constant or
    a source with a default (a run without the key takes the default: no error)."""
    if name in HISTORY_FIELDS:
        return "history", source.constant
    if source.where is None or source.has_default:
        return None
    return source.where, source.key


def _flow(match: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in match.items()) + "}"


def _closest_identity(match: Mapping[str, str], identities: list[Identity]) -> str:
    """A did-you-mean for the first match key whose pattern no run's value fits."""
    from optimizers.did_you_mean import did_you_mean  # loads torch: only for the message

    for key, pattern in match.items():
        values = sorted({str(v) for i in identities for v in (i.tags if key == "tag" else [getattr(i, key)])
                         if v is not None})
        if not any(fnmatch.fnmatchcase(v, pattern) for v in values):
            hint = did_you_mean(pattern, values)
            return hint or (f" (their {key}s: {', '.join(values[:8])}{', ...' if len(values) > 8 else ''})"
                            if values else f" (no run has a {key})")
    return ""


def resolve(source: Source, config: Mapping[str, Any], summary: Callable[[], Mapping[str, Any]]) -> Any:
    """The raw value ``source`` gives a run (MISSING when its key is absent and it has no
    default); ``summary`` is called only when the source needs it."""
    if source.where is None:
        return source.constant
    value = lookup(config if source.where == "config" else summary(), source.key)
    if value is MISSING and source.has_default:
        return source.default
    return value


EXAMPLE = Path(__file__).parent / "maps" / "lightning-wandb.yaml"  # a map for Lightning's WandbLogger


def foreign_runs_help() -> str:
    """``optbench analyze --help``'s epilog: what a run optbench did not write needs, what is
    read without a map (from ``analysis.conventions``), and the example map."""
    import textwrap

    from analysis import conventions as C

    names = "; ".join(f"{field} from {' or '.join(keys)}" for field, keys in C.CONFIG_NAMES.items())
    paragraphs = [
        "A run is compared when its task, optimizer, learning rate, batch size, the history key that counts "
        "optimizer steps and its validation metric, with the metric's direction, are known. Without a map, the "
        f"config gives {names} (a wandb run without a task: its project); the step is "
        f"{' or '.join(C.STEP_KEYS)} (wandb's {C.WANDB_STEP} only where the run passed step= to wandb.log: "
        f"otherwise it counts log calls); wall time is {' or '.join(C.WALL_TIME_KEYS)}; the metric is the one "
        "logged key that names a validation metric (val_acc, val/loss, accuracy/val), its direction from its "
        "name. Runs lacking a field are left out, and the report says which and why; if every run is, analyze "
        "stops and says what is missing.",
        "--map MAP.yaml says where the fields are: a list of blocks, each for the runs its match selects "
        f"({', '.join(MATCH_KEYS)}: globs; no match: every run); each field is a constant, {{config: KEY}} or "
        "{summary: KEY} (KEY dotted or flat), with an optional default; step, wall_time and metric.key name "
        "history keys; a later block overrides an earlier one. The map applies to optbench's own runs too "
        f"(task: renames a task). For Lightning's WandbLogger, this one (to copy and edit: {EXAMPLE}):",
    ]
    text = "\n\n".join(textwrap.fill(p, width=100, initial_indent="  ", subsequent_indent="  ") for p in paragraphs)
    example = textwrap.indent(EXAMPLE.read_text(), "    ")
    return f"runs optbench did not write (your wandb runs, Lightning's WandbLogger, a wandb.log loop):\n{text}\n\n{example}"
