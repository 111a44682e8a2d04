"""The training run: ``train(config)`` turns one config into one run directory in the store.

A plain function (tests call it; the CLI is a thin layer over it). Completed and diverged runs
are results: running the same config again is a no-op unless ``force``. A run killed or
interrupted part-way resumes from its last checkpoint and ends with the summary an
uninterrupted run would have written.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_fabric.utilities.exceptions import MisconfigurationException

from experiments.config import (
    ConfigError, check_environment, effective_batch_size, optimizer_options, run_dir, to_yaml,
)
from experiments.callbacks.instrument import Instrumentation
from experiments.callbacks.interrupt import Interrupted, StopOnSignal
from experiments.callbacks.noise_scale import GradientNoiseScale
from experiments.callbacks.progress import Progress, log
from experiments.schedule import lr_multiplier, scaled_lr
from experiments.store import FINISHED, RunLockedError, RunStore, collect_meta, finite_or_none
from experiments.tasks import build_task
from optimizers import build_optimizer, warn_if_clipping_with_larc

__all__ = ["train", "build_run", "run_dir", "steps_to_target", "wandb_run_id"]


def steps_to_target(rows: list[dict[str, Any]], metric: str, target: float, higher_is_better: bool) -> Optional[int]:
    """First step whose validation ``metric`` reaches ``target``; None if it never does."""
    for row in rows:
        value = row.get(metric)
        if value is not None and (value >= target if higher_is_better else value <= target):
            return row["step"]
    return None


def _keep_aside(root: Path) -> None:
    """Rename a run directory that ``--force`` replaces: a result is never destroyed."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, number = root.with_name(f"{root.name}.replaced-{stamp}"), 1
    while target.exists():
        number += 1
        target = root.with_name(f"{root.name}.replaced-{stamp}-{number}")
    root.rename(target)


def _optimizer_factory(config: DictConfig, lr: float):
    options = optimizer_options(config)

    def factory(model: torch.nn.Module) -> torch.optim.Optimizer:
        optimizer = build_optimizer(config.optimizer.name, model, lr=lr, **options)
        warn_if_clipping_with_larc(optimizer, config.trainer.gradient_clip_val)
        return optimizer

    return factory


# Warnings that say nothing to an optbench user, each silenced by its own text, never by category:
_KNOWN_NOISE = (
    ".*does not have many workers.*",  # the built-in data is generated in the main process
    ".*IterableDataset.*__len__.*",  # the training stream is endless by design
    ".*LeafSpec.*is deprecated.*",  # torch deprecates a class Lightning's own code still uses
    ".*Checkpoint directory .* exists and is not empty.*",  # a resumed run: its own last.ckpt is there
    ".*The `srun` command is available on your system but is not used.*",  # SLURM's client on a login node
    ".*AMP with fp16 is not supported on CPU.*",  # refused below, in one line (_check_precision)
)
# Under 16-mixed only: the GradScaler skips every optimizer step whose scaled gradients overflow,
# the first ones included (its initial scale is chosen to be too high, then halved). Lightning
# steps the scheduler anyway, so that the rate stays lr × lr_multiplier(global_step); torch sees
# the scheduler's first step come before any optimizer.step() and warns that the schedule's first
# value is lost, while it was used by an update the scaler chose to skip. Under any other
# precision the same warning would point at a real mistake, and stays.
_SKIPPED_STEP_NOISE = re.escape("Detected call of `lr_scheduler.step()` before `optimizer.step()`")


def _ignore_known_noise(precision: str) -> None:
    """Add ignore filters for the warnings known to be noise under ``precision`` (call it inside
    ``warnings.catch_warnings()``, which restores the filters after the run)."""
    for message in (*_KNOWN_NOISE, *([_SKIPPED_STEP_NOISE] if precision == "16-mixed" else [])):
        warnings.filterwarnings("ignore", message=message)


def train(config: DictConfig, *, force: bool = False, progress_every_s: Optional[float] = None) -> Optional[dict[str, Any]]:
    """Train one run; return its summary (``skipped=True`` when it had already finished), or None
    in the other processes of a multi-process run (the global rank 0 writes and reports).

    The process that writes holds the run's lock while it trains: a second process asked for the
    same run raises ``RunLockedError`` instead of training into the same directory. SIGINT and
    SIGTERM stop the run at the next batch boundary: its summary says ``interrupted by SIGTERM``
    (say), and ``Interrupted`` is raised; the same call resumes it. ``progress_every_s`` reports
    progress (``experiments.callbacks.progress``) that often; None: silent.
    """
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no banners: the store records
    store = RunStore(run_dir(config))
    if store.is_finished() and not force:
        return {**store.summary(), "skipped": True}
    check_environment(config)
    with StopOnSignal() as stop, warnings.catch_warnings():
        _ignore_known_noise(config.trainer.precision)
        return _train(config, store, stop, force=force, progress_every_s=progress_every_s)


def build_run(config: DictConfig) -> tuple[Any, Any, float, int]:
    """The seeded task module (with its optimizer factory and schedule) and data module of
    ``config``, its peak learning rate and its effective batch size."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    batch = effective_batch_size(config)
    lr = scaled_lr(config.optimizer.lr, config.optimizer.lr_scaling, batch, config.optimizer.reference_batch_size)
    lr_lambda = partial(
        lr_multiplier, name=config.schedule.name, max_steps=config.trainer.max_steps,
        warmup_steps=config.schedule.warmup_steps, min_lr_ratio=config.schedule.min_lr_ratio,
        power=config.schedule.power,
    )
    try:
        module, data = build_task(config, _optimizer_factory(config, lr), lr_lambda)
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable data: name it, in one line
        raise ConfigError(f"data ({config.data.source}): {str(exc).splitlines()[0]}") from None
    return module, data, lr, batch


def _check_precision(config: DictConfig, trainer: pl.Trainer) -> None:
    """Refuse a precision Lightning would replace (16-mixed runs as bf16-mixed on a CPU; "32" is
    32-true): config.yaml, and so the run_id, must say what the run computes."""
    if trainer.precision != config.trainer.precision:
        raise ConfigError(
            f"trainer.precision={config.trainer.precision} runs as {trainer.precision} on "
            f"{trainer.strategy.root_device.type}: set trainer.precision={trainer.precision}, "
            "so the run records what it computes"
        )


def _train(config: DictConfig, store: RunStore, stop: StopOnSignal, *, force: bool,
           progress_every_s: Optional[float]) -> Optional[dict[str, Any]]:
    """Build the task and the trainer, then claim the run and fit it (``train`` sets up around it)."""
    module, data, lr, batch = build_run(config)
    instrumentation = Instrumentation(
        store, wandb=_wandb_logger(config, store, force) if config.logger.wandb != "disabled" else None,
        effective_batch_size=batch, log_every=config.trainer.log_every_n_steps,
        layer_stats_every=config.trainer.layer_stats_every_n_steps,
        divergence_factor=config.trainer.divergence_factor,
        stop_at=(f"val/{module.metric}", _target(config, module), module.higher_is_better)
        if config.trainer.stop_at_target else None,
    )
    callbacks: list[pl.Callback] = [instrumentation]
    if config.trainer.grad_noise_scale:
        callbacks.append(GradientNoiseScale(
            instrumentation.write_scalars, micro_batch=config.data.batch_size,
            accumulate=config.trainer.accumulate_grad_batches, log_every=config.trainer.log_every_n_steps,
        ))
    # Saved after each validation (not before it, as every_n_train_steps would): a resumed run
    # then never misses a validation nor restores a best metric older than its step.
    checkpoint = ModelCheckpoint(dirpath=store.checkpoints, filename="last", save_top_k=1, monitor=None,
                                 save_on_train_epoch_end=False, enable_version_counter=False)
    progress = [] if progress_every_s is None else [Progress(effective_batch_size=batch, every_s=progress_every_s)]
    try:  # Lightning checks precision, accelerator, strategy... here: before anything is written
        trainer = pl.Trainer(
            default_root_dir=str(store.root),  # where Lightning looks for SLURM requeue checkpoints
            max_steps=config.trainer.max_steps,
            accumulate_grad_batches=config.trainer.accumulate_grad_batches,
            precision=config.trainer.precision,
            accelerator=config.trainer.accelerator,
            devices=config.trainer.devices,
            num_nodes=config.trainer.num_nodes,
            strategy=config.trainer.strategy,
            gradient_clip_val=config.trainer.gradient_clip_val,
            val_check_interval=config.trainer.val_every_n_steps * config.trainer.accumulate_grad_batches,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # the data module shards training and validation itself
            logger=False,  # Instrumentation logs to the store and wandb, at the same steps
            callbacks=[*callbacks, checkpoint, stop, *progress],
            enable_progress_bar=False,  # experiments.callbacks.progress reports instead
            enable_model_summary=False,
            deterministic=False,
        )
    except (MisconfigurationException, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    _check_precision(config, trainer)
    if trainer.is_global_zero:
        finished = _claim(store, force)
        if finished is not None:
            return {**finished, "skipped": True}
    try:
        return _fit_and_finish(config, store, module, data, trainer, instrumentation, stop, lr, batch)
    finally:
        if trainer.is_global_zero:
            store.lock.release()


def _claim(store: RunStore, force: bool) -> Optional[dict[str, Any]]:
    """Take the run's lock (under ``force``, first setting a finished run aside). Returns the
    summary of a run another process finished since ``train`` looked, with the lock released."""
    if force and store.root.exists():
        holder = store.lock.holder()
        if holder is not None:
            raise RunLockedError(f"cannot --force run {store.root}: process {holder['pid']} on "
                                 f"{holder['host']} is training it")
        _keep_aside(store.root)
    store.lock.acquire()
    finished = store.summary()
    if finished is not None and finished["status"] in FINISHED and not force:
        store.lock.release()
        return finished
    return None


def _fit_and_finish(config: DictConfig, store: RunStore, module, data, trainer: pl.Trainer,
                    instrumentation: Instrumentation, stop: StopOnSignal, lr: float,
                    batch: int) -> Optional[dict[str, Any]]:
    resume = store.resume_checkpoint()
    if trainer.is_global_zero:
        store.begin(to_yaml(config), collect_meta(), resume=resume is not None)
        resuming = f" (resuming from {resume.relative_to(store.root)})" if resume else ""
        log.info(f"run directory: {store.root}{resuming}")
    status, error = "completed", None
    try:
        trainer.fit(module, data, ckpt_path=str(resume) if resume else None)
    except (Interrupted, SystemExit) as exc:  # SIGTERM reaches here as Lightning's SIGTERMException
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted(stop.received) if stop.received else None
        if trainer.is_global_zero:
            store.finish(_summary(config, store, module, trainer, instrumentation, "interrupted",
                                  str(interrupted or f"stopped by {type(exc).__name__}"), lr, batch))
        if interrupted is not None:
            raise interrupted from None
        raise
    except Exception as exc:  # recorded in the store; the caller decides whether to go on
        status, error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    if instrumentation.diverged_at is not None:
        status = "diverged"
    elif (status == "completed" and trainer.global_step < config.trainer.max_steps
          and instrumentation.reached_target_at is None):
        status = "interrupted"
    if not trainer.is_global_zero:
        return None
    summary = store.finish(_summary(config, store, module, trainer, instrumentation, status, error, lr, batch))
    if instrumentation.wandb is not None:
        instrumentation.wandb.experiment.summary.update(summary)  # nested best/final read back as dicts
        instrumentation.wandb.finalize(status)
        import wandb

        wandb.finish()
    return summary


def _target(config: DictConfig, module) -> float:
    """The run's steps-to-target threshold: ``target``, else the task's default for its size."""
    return config.target if config.target is not None else module.default_target[config.size]


def wandb_run_id(store: RunStore, force: bool) -> str:
    """The wandb run id of the run's current attempt set: ``<study>-<run_id>``, then
    ``<study>-<run_id>-<n>`` after n-1 ``--force`` re-runs set the old directory aside.

    Resumed attempts append to one wandb run; the same config in another study, or a re-run
    under ``--force`` (which sets the directory aside, see ``_claim``), starts a new one.
    """
    earlier = len(list(store.root.parent.glob(f"{store.run_id}.replaced-*"))) + int(force and store.root.exists())
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{store.study}-{store.run_id}")
    return name if earlier == 0 else f"{name}-{earlier + 1}"


def _wandb_logger(config: DictConfig, store: RunStore, force: bool):
    """A WandbLogger that Instrumentation logs through (never handed to the Trainer: Lightning
    would log rank 0's loss at its own cadence). Named by the run_id, grouped by the study."""
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(
        project=config.logger.project, entity=config.logger.entity, group=config.study,
        tags=[config.optimizer.name, config.task, *config.logger.tags], name=store.run_id,
        id=wandb_run_id(store, force), save_dir=str(store.root), mode=config.logger.wandb, resume="allow",
        config=OmegaConf.to_container(config, resolve=True),
    )


def _summary(config: DictConfig, store: RunStore, module, trainer: pl.Trainer, instrumentation: Instrumentation,
             status: str, error: Optional[str], lr: float, batch: int) -> dict[str, Any]:
    rows = list(store.rows("metrics.jsonl"))
    metric = f"val/{module.metric}"
    target = _target(config, module)
    final = {}
    for row in rows:
        final.update({k: v for k, v in row.items() if k not in ("step", "epoch", "wall_time")})
    values = [row[metric] for row in rows if finite_or_none(row.get(metric)) is not None]
    best = (max if module.higher_is_better else min)(values) if values else None
    return {
        "status": status,
        "error": error,
        "run_id": store.root.name,
        "task": config.task,
        "optimizer": config.optimizer.name,
        "lr": lr,
        "effective_batch_size": batch,
        "seed": config.seed,
        "global_step": trainer.global_step,
        "diverged_at_step": instrumentation.diverged_at,
        "metric": metric,
        "higher_is_better": module.higher_is_better,
        "final": {k: finite_or_none(v) for k, v in final.items()},
        "best": {metric: best},
        "target": target,
        "steps_to_target": steps_to_target(rows, metric, target, module.higher_is_better),
        "wall_time_s": instrumentation.elapsed(),
        "train_step_time_s": instrumentation.step_timer.mean(),
        "throughput_samples_per_s": instrumentation.throughput(),
        "peak_memory_bytes": instrumentation.peak_memory.peak() if instrumentation.peak_memory else None,
        "optimizer_state_bytes": instrumentation.state_bytes,
        "num_parameters": sum(p.numel() for p in module.model.parameters() if p.requires_grad),
        "grad_noise_scale": next((c.estimator.simple for c in trainer.callbacks
                                  if isinstance(c, GradientNoiseScale)), None),
    }
