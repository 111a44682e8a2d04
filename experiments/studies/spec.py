"""Study specs: a YAML file (or a built-in name) read into a validated ``StudySpec``.

```yaml
name: bs-scaling-vision        # runs go to <out_dir>/<name>/<run_id>/
description: one line for `optbench study list`
base: {task: vision, trainer: {max_steps: 400}}   # a run config, nested or dotted keys
grid:                          # dotted key -> list; the study's cells are the cartesian product
  optimizer.name: [novograd, adamw]
  data.batch_size,trainer.max_steps: [[16, 800], [64, 300]]   # linked keys: one list per value
optimizers:                    # per optimizer: its own base keys and search dimensions
  sgd: {base: {optimizer.momentum: 0.9}, space: {optimizer.lr: {log_range: [0.01, 3]}}}
tasks:                         # the same, per task
  lm: {base: {trainer.max_steps: 200}}
search:                        # in every cell: trials over `space` (see space.py)
  method: sobol                # grid | sobol | halton
  trials: 8                    # quasi-random points per cell
  seed: 0                      # of the scrambled sequence
  objective: steps_to_target   # steps_to_target | best
  space: {optimizer.lr: {log_range: [1e-4, 1]}}
  seeds: [0, 1, 2]             # run every point with these seeds, select by their mean (default: one run)
  extend: 2                    # extend the search beyond an edge the selection sits on, at most twice
seeds: [3, 4, 5]               # re-run each cell's selected point with these seeds: they score it
measure_noise_scale: true      # the seeds phase adds one run per selected point measuring B_simple
max_micro_batch: 64            # larger batches run as micro-batches with gradient accumulation
max_attempts: 3                # a failed run is started at most this many times
```

Every key is checked here (a misspelt one is a one-line ``StudyError`` naming it); config keys
and values are checked by ``experiments.config.load_config`` when the plan expands each run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from omegaconf import OmegaConf

from experiments.best_point import OBJECTIVES
from experiments.dotted_keys import flatten
from experiments.studies.space import METHODS, Dimension, SpaceError, parse_dimension
from experiments.yaml_error import yaml_error

__all__ = [
    "StudyError", "StudySpec", "Search", "Overrides", "load_spec", "parse_spec", "builtin_names",
    "builtin_path", "override", "grid_items",
]

_TOP = ("name", "description", "base", "grid", "optimizers", "tasks", "search", "seeds", "measure_noise_scale",
        "max_micro_batch", "max_attempts")
_SEARCH = ("method", "trials", "seed", "objective", "space", "seeds", "extend")
_OVERRIDES = ("base", "space")
ALL = "all"  # a grid value list standing for every registered name installed here (optimizer.name, task)


class StudyError(ValueError):
    """A study spec that cannot be run: the message is one line naming the problem."""


@dataclass(frozen=True)
class Overrides:
    """``optimizers.<name>`` or ``tasks.<name>``: base keys and search dimensions for those runs."""

    base: dict[str, Any] = field(default_factory=dict)
    space: tuple[Dimension, ...] = ()


@dataclass(frozen=True)
class Search:
    """The per-cell search: how its points are drawn and which one a cell selects."""

    method: str = "grid"
    trials: Optional[int] = None
    seed: int = 0
    objective: str = "steps_to_target"
    space: tuple[Dimension, ...] = ()
    seeds: tuple[int, ...] = ()  # each point runs once per seed (empty: once, with the config's seed)
    extend: int = 0  # how many times a selection on an edge of the space extends the search beyond it


@dataclass(frozen=True)
class StudySpec:
    name: str
    source: str  # the file or built-in it came from, for messages
    raw: dict[str, Any]  # the spec as written (recorded beside the study's runs)
    description: str = ""
    base: dict[str, Any] = field(default_factory=dict)  # dotted key -> value
    grid: dict[str, list[Any]] = field(default_factory=dict)
    optimizers: dict[str, Overrides] = field(default_factory=dict)
    tasks: dict[str, Overrides] = field(default_factory=dict)
    search: Optional[Search] = None
    seeds: tuple[int, ...] = ()
    measure_noise_scale: bool = False
    max_micro_batch: Optional[int] = None
    max_attempts: int = 3


def _specs_dir():
    return resources.files("experiments.studies") / "specs"


def builtin_names() -> list[str]:
    """The built-in studies shipped in the package (``specs/<name>.yaml``)."""
    return sorted(p.name[:-5] for p in _specs_dir().iterdir() if p.name.endswith(".yaml"))


def builtin_path(name: str) -> Path:
    return Path(str(_specs_dir() / f"{name}.yaml"))


def load_spec(source: str | Path) -> StudySpec:
    """A spec from a YAML file, or a built-in study by name."""
    text = str(source)
    path = Path(text)
    if not path.is_file():
        if text in builtin_names():
            path = builtin_path(text)
        elif text.endswith((".yaml", ".yml")) or "/" in text:
            raise StudyError(f"study spec not found: {text}")
        else:
            raise StudyError(f"unknown study {text!r}: not a file, nor a built-in study "
                             f"({', '.join(builtin_names())})")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except yaml.YAMLError as error:
        raise StudyError(yaml_error(path, error)) from None
    return parse_spec(raw, source=text)


def parse_spec(raw: Any, source: str = "<spec>") -> StudySpec:
    """Check the spec's structure and build a ``StudySpec``; config keys are checked later."""
    where = f"study spec {source}"
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: must be a mapping with keys {', '.join(_TOP)}")
    _check_keys(raw, _TOP, where)
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise StudyError(f"{where}: 'name' must be a directory name (letters, digits, _ . -), got {name!r}")
    base = flatten(_mapping(raw.get("base", {}), f"{where}: base"))
    for key in ("study",):
        if key in base:
            raise StudyError(f"{where}: base: {key!r} is the spec's name, not a base key")
    grid = _grid(_mapping(raw.get("grid", {}), f"{where}: grid"), where)
    search = _search(raw.get("search"), where)
    seeds = _seeds(raw, where)
    if seeds and search is None:
        raise StudyError(f"{where}: 'seeds' re-run the point each cell's search selects: add a 'search'")
    shared = sorted(set(seeds) & set(search.seeds if search else ()))
    if shared:
        raise StudyError(f"{where}: seed {shared[0]} is in both 'seeds' and 'search.seeds': the seeds that "
                         "score a selected point must not be those that selected it")
    noise = raw.get("measure_noise_scale", False)
    if not isinstance(noise, bool):
        raise StudyError(f"{where}: 'measure_noise_scale' must be true or false, got {noise!r}")
    if noise and not seeds:
        raise StudyError(f"{where}: 'measure_noise_scale' adds a run to the seeds phase: add 'seeds'")
    return StudySpec(
        name=name, source=source, raw=raw, description=str(raw.get("description", "")), base=base, grid=grid,
        optimizers=_per_name(raw, "optimizers", where), tasks=_per_name(raw, "tasks", where), search=search,
        seeds=tuple(seeds), measure_noise_scale=noise, max_micro_batch=_positive(raw, "max_micro_batch", where, None),
        max_attempts=_positive(raw, "max_attempts", where, 3),
    )


def _check_keys(mapping: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in valid:
            from optimizers.did_you_mean import did_you_mean  # optimizers loads torch: only when needed

            hint = did_you_mean(key, valid) or f" (valid: {', '.join(valid)})"
            raise StudyError(f"{where}: unknown key {key!r}{hint}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{where} must be a mapping, got {value!r}")
    return value


def _seeds(raw: Mapping[str, Any], where: str) -> list[int]:
    """``raw["seeds"]``: a non-empty list of distinct integers (empty when absent)."""
    seeds = raw.get("seeds", [])
    if not isinstance(seeds, list) or not all(_is_int(s) for s in seeds):
        raise StudyError(f"{where}: 'seeds' must be a list of integers, got {seeds!r}")
    if "seeds" in raw and not seeds:
        raise StudyError(f"{where}: 'seeds' is an empty list")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{where}: 'seeds' repeats a seed: {seeds!r}")
    return seeds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(raw: Mapping[str, Any], key: str, where: str, default: Optional[int]) -> Optional[int]:
    value = raw.get(key, default)
    if value is not None and not (_is_int(value) and value > 0):
        raise StudyError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def override(key: str, value: Any) -> str:
    """``key=value`` as ``optbench train`` parses it back to ``value`` (strings quoted when YAML
    would read them as something else: ``"1"``, ``"null"``)."""
    if isinstance(value, str):
        plain = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"] if value else None
        return f"{key}={value}" if plain == value else f"{key}={json.dumps(value)}"
    return f"{key}={json.dumps(value)}"


def _grid(grid: dict[str, Any], where: str) -> dict[str, list[Any]]:
    out = {}
    for key, values in grid.items():
        if values == ALL:
            values = _registry_names(key, f"{where}: grid")
        if not isinstance(values, list):
            raise StudyError(f"{where}: grid: {key!r} must be a list of values, got {values!r}")
        if not values:
            raise StudyError(f"{where}: grid: {key!r} is an empty list")
        width = len(str(key).split(","))
        if width > 1 and not all(isinstance(v, list) and len(v) == width for v in values):
            raise StudyError(f"{where}: grid: {key!r} links {width} keys: each value must be a list of {width}")
        out[str(key)] = values
    return out


def grid_items(key: str, value: Any) -> list[tuple[str, Any]]:
    """A grid entry's (key, value) pairs: one, or one per key of a linked ``a,b`` entry."""
    keys = key.split(",")
    return list(zip(keys, value)) if len(keys) > 1 else [(key, value)]


def _registry_names(key: str, where: str) -> list[str]:
    if key == "optimizer.name":
        from optimizers.registry import optimizer_names

        return optimizer_names(installed=True)  # a peer without its extra is not in "all"
    if key == "task":
        from experiments.tasks import TaskError, task_names

        try:
            return task_names()
        except TaskError as error:  # an installed package registers a task badly
            raise StudyError(f"{where}: {error}") from None
    raise StudyError(f"{where}: {key!r}: '{ALL}' stands for every registered name of optimizer.name or task only")


def _check_task_path(path: str, where: str) -> None:
    """A ``tasks:`` entry named by import path names a usable task."""
    from experiments.tasks import TaskError, task_info

    try:
        task_info(path)
    except TaskError as error:
        raise StudyError(f"{where}: {error}") from None


def _space(raw: Any, where: str) -> tuple[Dimension, ...]:
    try:
        return tuple(parse_dimension(str(k), v) for k, v in _mapping(raw, f"{where}: space").items())
    except SpaceError as error:
        raise StudyError(f"{where}: {error}") from None


def _search(raw: Any, where: str) -> Optional[Search]:
    if raw is None:
        return None
    raw = _mapping(raw, f"{where}: search")
    _check_keys(raw, _SEARCH, f"{where}: search")
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise StudyError(f"{where}: search: invalid method {method!r} (valid: {', '.join(METHODS)})")
    objective = raw.get("objective", "steps_to_target")
    if objective not in OBJECTIVES:
        raise StudyError(f"{where}: search: invalid objective {objective!r} (valid: {', '.join(OBJECTIVES)})")
    trials = _positive(raw, "trials", f"{where}: search", None)
    if method == "grid" and trials is not None:
        raise StudyError(f"{where}: search: 'trials' is for sobol and halton; method grid takes each "
                         "dimension's 'points'")
    if method != "grid" and trials is None:
        raise StudyError(f"{where}: search: method {method} needs 'trials' (points per cell)")
    seed = raw.get("seed", 0)
    if not _is_int(seed):
        raise StudyError(f"{where}: search: 'seed' must be an integer, got {seed!r}")
    extend = raw.get("extend", 0)
    if not (_is_int(extend) and extend >= 0):
        raise StudyError(f"{where}: search: 'extend' must be a non-negative integer, got {extend!r}")
    space = _space(raw.get("space", {}), f"{where}: search")
    _check_points(space, method, f"{where}: search")
    return Search(method=method, trials=trials, seed=seed, objective=objective, space=space,
                  seeds=tuple(_seeds(raw, f"{where}: search")), extend=extend)


def _check_points(space: tuple[Dimension, ...], method: str, where: str) -> None:
    for dim in space:
        if method != "grid" and dim.points is not None:
            raise StudyError(f"{where}: space: {dim.key!r}: 'points' is for method grid; {method} draws 'trials'")
        if method == "grid" and dim.kind != "values" and dim.points is None:
            raise StudyError(f"{where}: space: {dim.key!r} needs 'points' for method grid")


def _per_name(raw: Mapping[str, Any], section: str, where: str) -> dict[str, Overrides]:
    """``optimizers:`` or ``tasks:``: base keys and search dimensions per name (an optimizer's
    name may be an import path, resolved when the plan loads its runs)."""
    entries = _mapping(raw.get(section, {}), f"{where}: {section}")
    if not entries:
        return {}
    from optimizers.outside import is_import_path
    names = _registry_names("optimizer.name" if section == "optimizers" else "task", where)
    method = (raw.get("search") or {}).get("method", "grid") if isinstance(raw.get("search"), dict) else "grid"
    out = {}
    for name, entry in entries.items():
        here = f"{where}: {section}.{name}"
        if section == "tasks" and ":" in name:
            _check_task_path(name, here)
        elif name not in names and not (section == "optimizers" and is_import_path(str(name))):
            kind = "optimizer" if section == "optimizers" else "task"
            raise StudyError(f"{where}: {section}: unknown {kind} {name!r}; valid names: {', '.join(names)}")
        entry = _mapping(entry, here)
        _check_keys(entry, _OVERRIDES, here)
        if "space" in entry and raw.get("search") is None:
            raise StudyError(f"{here}: 'space' needs a 'search' in the spec")
        space = _space(entry.get("space", {}), here)
        _check_points(space, method, here)
        out[name] = Overrides(base=flatten(_mapping(entry.get("base", {}), f"{here}: base")), space=space)
    return out
