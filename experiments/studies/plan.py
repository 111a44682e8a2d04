"""Expansion: a ``StudySpec`` and command-line overrides → the ordered list of runs to train.

Each run is the ``optbench train`` argument list that produces it (``study=<name>`` included),
so a run trained by hand with the same arguments has the same run_id and directory, and the
other way round. Layers, later ones winning: ``base``, ``tasks.<task>.base``,
``optimizers.<name>.base``, the command-line overrides, the cell's grid values, the search
point; then, with ``max_micro_batch``, a larger ``data.batch_size`` B becomes micro-batches of
``max_micro_batch`` with ``trainer.accumulate_grad_batches`` multiplied by B / max_micro_batch
(the same effective batch per optimizer step; such a run's id is that of the accumulated config).
A run measuring the gradient noise scale, which needs two micro-batches a step, is split in two
the same way where its batch is one micro-batch (``StudyPlan.noise_runs``).

The search phase is planned here; the runs that depend on results (a search's extension beyond
an edge, the seeds of a selected point) are planned by ``StudyPlan``'s methods from the
selection, so that they too are the same on every invocation.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

from experiments.config import ConfigError, load_config, run_id
from experiments.studies.space import Dimension, extension_values, search_points
from experiments.studies.spec import StudyError, StudySpec, grid_items, override

__all__ = ["PlannedRun", "Cell", "StudyPlan", "plan_study", "PHASES", "SEARCH", "EXTEND", "SEEDS", "NOISE", "GRID"]

# PlannedRun.phase: a search trial, a trial of a search's extension beyond an edge, a confirmation
# run of a selected point, its noise-scale run, or the one run of a cell of a study without a search
SEARCH, EXTEND, SEEDS, NOISE, GRID = "search", "extend", "seeds", "noise", "grid"
PHASES = (SEARCH, EXTEND, SEEDS, NOISE, GRID)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: its ``optbench train`` arguments, config and place in the store."""

    overrides: tuple[str, ...]
    config: DictConfig = field(compare=False, repr=False)
    run_id: str
    root: Path
    cell: tuple[tuple[str, Any], ...]  # the grid values of its cell
    point: tuple[tuple[str, Any], ...]  # the searched values (empty without a search)
    phase: str  # one of PHASES
    seed: Optional[int] = None  # the seed the study gave it (search.seeds, seeds), else the config's

    @property
    def swept(self) -> dict[str, Any]:
        """The values this run was given by the study: grid, search point and the seed it set."""
        values = {**dict(self.cell), **dict(self.point)}
        if self.seed is not None:
            values["seed"] = self.seed
        if self.phase == NOISE:
            values["trainer.grad_noise_scale"] = True
        return values

    def command(self) -> list[str]:
        """The process that trains the run (its exit codes are ``optbench train``'s)."""
        return [sys.executable, "-m", "experiments.cli", "train", *self.overrides]


@dataclass(frozen=True)
class Cell:
    """A grid point (Shallue et al.'s (task, optimizer, batch size)): its search's trials."""

    key: tuple[tuple[str, Any], ...]
    space: tuple[Dimension, ...]
    trials: tuple[PlannedRun, ...]  # each point's runs (one per search seed), point by point
    prefix: tuple[str, ...] = ()  # the runs' overrides before their point: layers, command line, grid

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.key) or "(single cell)"


@dataclass(frozen=True)
class StudyPlan:
    spec: StudySpec
    overrides: tuple[str, ...]  # from the command line, applied to every run
    study_dir: Path
    cells: tuple[Cell, ...]

    def search_runs(self) -> list[PlannedRun]:
        """Every trial of every cell, in order, each run once (two cells may share a run)."""
        return _unique(run for cell in self.cells for run in cell.trials)

    def point_runs(self, cell: Cell, point: dict[str, Any], phase: str = SEARCH) -> list[PlannedRun]:
        """The runs that try ``point`` in ``cell``: one per ``search.seeds``, else one."""
        return _point_runs(self.spec, cell, point, phase)

    def extension_runs(self, cell: Cell, tried: Sequence[dict[str, Any]], chosen: dict[str, Any],
                       edges: Sequence[str]) -> list[PlannedRun]:
        """The runs of one extension of ``cell``'s search beyond the edges its selection
        ``chosen`` sits on (``tried``: every point tried so far): per edge key, the values of
        ``space.extension_values`` with the other keys at the chosen point's values."""
        dims = {dim.key: dim for dim in cell.space}
        runs = []
        for key in edges:
            values = [point[key] for point in tried]
            for value in extension_values(dims[key], values, chosen[key], self.spacings(dims[key])):
                runs += _point_runs(self.spec, cell, {**chosen, key: value}, EXTEND)
        return _unique(runs)

    def spacings(self, dim: Dimension) -> int:
        """The search's points along ``dim`` less one: how many spacings its range is cut into."""
        search = self.spec.search
        return (dim.points if search.method == "grid" else search.trials) - 1

    def seed_runs(self, cell: Cell, chosen: PlannedRun) -> list[PlannedRun]:
        """The selected point (``chosen``: one of its runs) with each of the spec's seeds (a
        seed equal to the chosen run's is that run itself and is left out)."""
        runs = []
        for seed in self.spec.seeds:
            run = _planned(self.spec, [*chosen.overrides, f"seed={seed}"], chosen.cell, chosen.point, SEEDS, seed)
            if run.run_id != chosen.run_id:
                runs.append(run)
        return _unique(runs)

    def noise_runs(self, cell: Cell, chosen: PlannedRun) -> list[PlannedRun]:
        """With ``measure_noise_scale``: the selected point once more, measuring the gradient
        noise scale (``trainer.grad_noise_scale=true``), which needs two micro-batches a step:
        a point whose batch is one micro-batch runs as two halves with accumulation (the same
        effective batch). Not a scoring run: BatchNorm sees the half batches."""
        if not self.spec.measure_noise_scale:
            return []
        dotlist = list(chosen.overrides)
        if chosen.config.trainer.accumulate_grad_batches < 2:
            dotlist = _micro_batches(dotlist, chosen.config, 2, f"study spec {self.spec.source}: {cell.label}")
        return [_planned(self.spec, [*dotlist, "trainer.grad_noise_scale=true"], chosen.cell, chosen.point, NOISE)]


def _unique(runs) -> list[PlannedRun]:
    seen: dict[str, PlannedRun] = {}
    for run in runs:
        seen.setdefault(run.run_id, run)
    return list(seen.values())


def plan_study(spec: StudySpec, overrides: Sequence[str] = ()) -> StudyPlan:
    """Validate the spec's config keys and values, and expand it into cells of planned runs.

    Every run config goes through ``load_config`` (as ``optbench train`` would): a bad key or
    value is a one-line ``StudyError`` naming the section or run it came from, raised before
    anything runs or is written.
    """
    where = f"study spec {spec.source}"
    swept = {k for key in spec.grid for k in key.split(",")} | {d.key for d in _all_dimensions(spec)}
    cli = _parse_overrides(overrides, swept)
    base = [override(k, v) for k, v in spec.base.items()]
    _load([*cli, f"study={spec.name}"], "command line")
    study_config = _load([*base, *cli, f"study={spec.name}"], f"{where}: base")
    for key, values in spec.grid.items():
        for value in values:
            _load([*base, *cli, *(override(k, v) for k, v in grid_items(key, value))], f"{where}: grid")
    cells = []
    for combo in itertools.product(*spec.grid.values()):
        key = tuple(item for entry, value in zip(spec.grid, combo) for item in grid_items(entry, value))
        grid = [override(k, v) for k, v in key]
        label = " ".join(grid) or "base"
        probe = _load([*base, *cli, *grid], f"{where}: {label}")
        per_task, per_optimizer = spec.tasks.get(probe.task), spec.optimizers.get(probe.optimizer.name)
        layers = [*base]
        for extra in (per_task, per_optimizer):
            if extra is not None:
                layers += [override(k, v) for k, v in extra.base.items()]
        space = _space(spec, per_task, per_optimizer)
        search = spec.search
        cell = Cell(key=key, space=space, trials=(), prefix=(*layers, *cli, *grid))
        if search is None:
            cells.append(replace(cell, trials=(_planned(spec, list(cell.prefix), key, (), GRID),)))
            continue
        points = search_points(space, search.method, search.trials, search.seed)
        cells.append(replace(cell, trials=tuple(_unique(run for point in points
                                                        for run in _point_runs(spec, cell, point, SEARCH)))))
    return StudyPlan(spec=spec, overrides=tuple(overrides), study_dir=Path(study_config.out_dir) / spec.name,
                     cells=tuple(cells))


def _point_runs(spec: StudySpec, cell: Cell, point: dict[str, Any], phase: str) -> list[PlannedRun]:
    dotlist = [*cell.prefix, *(override(k, v) for k, v in point.items())]
    seeds = spec.search.seeds if spec.search else ()
    if not seeds:
        return [_planned(spec, dotlist, cell.key, tuple(point.items()), phase)]
    return _unique(_planned(spec, [*dotlist, f"seed={seed}"], cell.key, tuple(point.items()), phase, seed)
                   for seed in seeds)


def _all_dimensions(spec: StudySpec) -> list[Dimension]:
    dims = list(spec.search.space) if spec.search else []
    for extra in [*spec.tasks.values(), *spec.optimizers.values()]:
        dims += extra.space
    return dims


def _space(spec: StudySpec, *extras) -> tuple[Dimension, ...]:
    """The cell's search dimensions: the spec's, then the task's and the optimizer's (a key
    given again replaces the earlier dimension in place)."""
    dims: dict[str, Dimension] = {d.key: d for d in (spec.search.space if spec.search else ())}
    for extra in extras:
        if extra is not None:
            dims.update({d.key: d for d in extra.space})
    return tuple(dims.values())


def _parse_overrides(overrides: Sequence[str], swept: set[str]) -> list[str]:
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep:
            raise StudyError(f"override {item!r} is not of the form key=value")
        if key == "study":
            raise StudyError("'study' is the study spec's name: it cannot be overridden")
        if key in swept:
            raise StudyError(f"{key!r} is swept by the study (grid or search): it cannot be overridden")
    return list(overrides)


def _load(dotlist: Sequence[str], where: str) -> DictConfig:
    try:
        return load_config(dotlist)
    except ConfigError as error:
        raise StudyError(f"{where}: {error}") from None


def _planned(spec: StudySpec, dotlist: list[str], cell: tuple, point: tuple, phase: str,
             seed: Optional[int] = None) -> PlannedRun:
    dotlist = [*dotlist, f"study={spec.name}"]
    label = " ".join(override(k, v) for k, v in (*cell, *point)) or "base"
    where = f"study spec {spec.source}: run {label}"
    config = _load(dotlist, where)
    micro = spec.max_micro_batch
    if micro is not None and config.data.batch_size > micro:
        if config.data.batch_size % micro:
            raise StudyError(f"{where}: data.batch_size={config.data.batch_size} is not a multiple of "
                             f"max_micro_batch={micro}")
        config = _load(dotlist := _micro_batches(dotlist, config, config.data.batch_size // micro, where), where)
    from experiments.config import run_dir  # the store's layout, as `optbench train` places the run

    return PlannedRun(overrides=tuple(dotlist), config=config, run_id=run_id(config), root=run_dir(config),
                      cell=cell, point=point, phase=phase, seed=seed)


def _micro_batches(dotlist: list[str], config: DictConfig, parts: int, where: str) -> list[str]:
    """``dotlist`` with its batch run as ``parts`` micro-batches (gradient accumulation
    multiplied by ``parts``): the same effective batch per optimizer step."""
    batch = config.data.batch_size
    if batch % parts:
        raise StudyError(f"{where}: data.batch_size={batch} cannot be split into {parts} equal micro-batches")
    return [*dotlist, f"data.batch_size={batch // parts}",
            f"trainer.accumulate_grad_batches={config.trainer.accumulate_grad_batches * parts}"]
