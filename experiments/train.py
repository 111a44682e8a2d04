"""The training run: ``train(config)`` turns one config into one run directory in the store.

A plain function (tests call it; the CLI is a thin layer over it), in three steps:
``build_run`` builds the ``Run`` once (the seeded task and data, the callbacks that record it,
the Trainer), ``fit`` trains it from its last checkpoint if there is one, and ``finish`` writes
its summary from what the callbacks tracked while it trained. Completed and diverged runs are
results: running the same config again is a no-op unless ``force``. A run killed or interrupted
part-way resumes from its last checkpoint (the previous one, or step 0, where that is unreadable:
``experiments.checkpoints``) and ends with the summary an uninterrupted run would have written
(the tracked state travels in the checkpoint).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lightning_fabric.utilities.exceptions import MisconfigurationException

from experiments.checkpoints import AtomicCheckpointIO, choose_resume
from experiments.config import (
    ConfigError, check_environment, effective_batch_size, optimizer_options, recorded, resolved_optimizer,
    resolved_target, run_dir, to_yaml,
)
from experiments.callbacks.divergence import DivergenceGuard
from experiments.callbacks.interrupt import Interrupted, StopOnSignal
from experiments.callbacks.layer_stats import LayerStatistics
from experiments.callbacks.legacy_state import LEGACY_STATE_KEY
from experiments.callbacks.metric_rows import MetricRows
from experiments.callbacks.noise_scale import GradientNoiseScale
from experiments.callbacks.optimizer_modes import OptimizerModes
from experiments.callbacks.peak_memory import TrainingPeakMemory
from experiments.callbacks.progress import Progress, log
from experiments.callbacks.step_timer import StepTiming
from experiments.callbacks.steps import ValidateLastStep
from experiments.callbacks.stop_at_target import StopAtTarget
from experiments.metric_curve import best, steps_to_target
from experiments.optimizer_state import optimizer_state_bytes
from experiments.schedule import lr_multiplier, scaled_lr
from experiments.store import (
    COMPLETED, DIVERGED, FAILED, FINISHED, INTERRUPTED, RunLockedError, RunStore, collect_meta, finite_or_none,
)
from experiments.tasks import TaskError, build_task, task_info
from experiments.tasks.base import TaskModule
from optimizers import build_optimizer, warn_if_clipping_with_larc
from optimizers.behaviour import evaluates_closure

__all__ = ["train", "Run", "build_run", "fit", "finish", "run_dir", "wandb_run_id"]


def _keep_aside(root: Path) -> None:
    """Rename a run directory that ``--force`` replaces: a result is never destroyed."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, number = root.with_name(f"{root.name}.replaced-{stamp}"), 1
    while target.exists():
        number += 1
        target = root.with_name(f"{root.name}.replaced-{stamp}-{number}")
    root.rename(target)


def _optimizer_factory(config: DictConfig, lr: float):
    """The task's optimizer factory: ``optimizer.name`` with its options over the model, at the
    peak rate ``lr``; bad options the config check could not see (a factory returning no
    optimizer, a value only the constructor refuses) are a ``ConfigError``."""
    options = optimizer_options(config)

    def factory(model: torch.nn.Module) -> torch.optim.Optimizer:
        try:
            optimizer = build_optimizer(config.optimizer.name, model, lr=lr,
                                        exclude_bias_and_norm=config.optimizer.exclude_bias_and_norm, **options)
        except (ValueError, TypeError) as error:
            message = str(error).splitlines()[0]
            raise ConfigError(message if message.startswith("optimizer ") else
                              f"optimizer {config.optimizer.name!r}: {message}") from None
        warn_if_clipping_with_larc(optimizer, config.trainer.gradient_clip_val)
        return optimizer

    return factory


def _check_closure(config: DictConfig, lr: float) -> None:
    """``ConfigError`` for an optimizer whose ``step`` ignores its closure (a user's, typically):
    Lightning's training step is that closure, so the run would fail at its first step."""
    if not evaluates_closure(config.optimizer.name, lr=lr, **optimizer_options(config)):
        raise ConfigError(
            f"optimizer {config.optimizer.name!r}: its step(closure) does not call the closure, which holds "
            "Lightning's forward and backward pass; call it as torch.optim's optimizers do "
            "(with torch.enable_grad(): loss = closure())"
        )


# Warnings that say nothing to an optbench user, each silenced by its own text, never by category:
_KNOWN_NOISE = (
    ".*does not have many workers.*",  # the built-in data is generated in the main process
    ".*IterableDataset.*__len__.*",  # the training stream is endless by design
    ".*LeafSpec.*is deprecated.*",  # torch deprecates a class Lightning's own code still uses
    ".*Checkpoint directory .* exists and is not empty.*",  # a resumed run: its own last.ckpt is there
    ".*The `srun` command is available on your system but is not used.*",  # SLURM's client on a login node
    ".*AMP with fp16 is not supported on CPU.*",  # refused below, in one line (_check_precision)
    # a checkpoint from before Instrumentation was split: the callbacks that replaced it read its state
    rf".*Please add the following callbacks: \['{LEGACY_STATE_KEY}'\]",
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


@dataclass
class Run:
    """One run, built once from its config by ``build_run``: what ``fit`` trains and ``finish``
    summarises."""

    config: DictConfig
    store: RunStore
    module: TaskModule  # seeded, with its optimizer factory and learning-rate schedule
    data: pl.LightningDataModule
    lr: float  # the peak learning rate, after optimizer.lr_scaling
    batch: int  # the effective batch size: samples per optimizer step
    target: float  # the steps-to-target threshold: config.target, else the task's default for its size
    trainer: pl.Trainer
    rows: MetricRows  # metrics.jsonl and wandb; the final values, validations and training time
    guard: DivergenceGuard
    timing: StepTiming
    memory: TrainingPeakMemory
    stop: StopOnSignal
    stop_at_target: Optional[StopAtTarget]  # with trainer.stop_at_target
    noise_scale: Optional[GradientNoiseScale]  # with trainer.grad_noise_scale

    @property
    def metric(self) -> str:
        return f"val/{self.module.info.metric}"


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
        run = build_run(config, store=store, force=force, stop=stop, progress_every_s=progress_every_s)
        if run.trainer.is_global_zero:
            finished = _claim(store, force)
            if finished is not None:
                return {**finished, "skipped": True}
        try:
            return finish(run, *fit(run))
        finally:
            if run.trainer.is_global_zero:
                store.lock.release()


def build_run(config: DictConfig, *, store: Optional[RunStore] = None, force: bool = False,
              stop: Optional[StopOnSignal] = None, progress_every_s: Optional[float] = None) -> Run:
    """The seeded ``Run`` of ``config``: task module and data, peak learning rate, effective
    batch size, target, callbacks and Trainer. Writes nothing.

    ``store`` defaults to the config's run directory; ``force`` names the wandb run as a forced
    re-run (``wandb_run_id``); ``stop`` is the signal handling the fit honours (``train`` enters
    it before building, so that a signal while the data builds stops at once); a run reports
    progress every ``progress_every_s`` seconds if given. Bad input (data, Trainer options, a
    precision the device would replace) raises ``ConfigError``.
    """
    pl.seed_everything(config.seed, workers=True, verbose=False)
    store = store if store is not None else RunStore(run_dir(config))
    stop = stop if stop is not None else StopOnSignal()
    batch = effective_batch_size(config)
    lr = scaled_lr(config.optimizer.lr, config.optimizer.lr_scaling, batch, config.optimizer.reference_batch_size)
    lr_lambda = partial(
        lr_multiplier, name=config.schedule.name, max_steps=config.trainer.max_steps,
        warmup_steps=config.schedule.warmup_steps, min_lr_ratio=config.schedule.min_lr_ratio,
        power=config.schedule.power,
    )
    factory = _optimizer_factory(config, lr)
    try:
        module, data = build_task(config, factory, lr_lambda)
    except TaskError as exc:  # a piece of the task missing or of the wrong kind
        raise ConfigError(str(exc)) from None
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable data: name it, in one line
        raise ConfigError(f"data ({config.data.source}): {str(exc).splitlines()[0]}") from None
    factory(module.model)  # built once here, so that what only the constructor refuses is bad input
    _check_closure(config, lr)
    target = resolved_target(config)
    trainer_config = config.trainer
    guard = DivergenceGuard(log_every=trainer_config.log_every_n_steps,
                            divergence_factor=trainer_config.divergence_factor)
    timing = StepTiming(batch)
    memory = TrainingPeakMemory()
    wandb = _wandb_logger(config, store, force) if config.logger.wandb != "disabled" else None
    rows = MetricRows(store, wandb=wandb, guard=guard, timing=timing, log_every=trainer_config.log_every_n_steps)
    stop_at_target = (StopAtTarget(f"val/{module.info.metric}", target, module.info.higher_is_better)
                      if trainer_config.stop_at_target else None)
    noise_scale = GradientNoiseScale(
        rows.write, micro_batch=config.data.batch_size, accumulate=trainer_config.accumulate_grad_batches,
        log_every=trainer_config.log_every_n_steps,
    ) if trainer_config.grad_noise_scale else None
    # Saved after each validation (not before it, as every_n_train_steps would): a resumed run
    # then never misses a validation nor restores a best metric older than its step.
    checkpoint = ModelCheckpoint(dirpath=store.checkpoints, filename="last", save_top_k=1, monitor=None,
                                 save_on_train_epoch_end=False, enable_version_counter=False)
    progress = (Progress(effective_batch_size=batch, metric=f"val/{module.info.metric}", every_s=progress_every_s)
                if progress_every_s is not None else None)
    # Lightning calls the callbacks in this order (ModelCheckpoint last). At the end of a batch
    # that stepped, the layer statistics measure the update, the guard reads the loss, the timer
    # ends the step (after the read, which waits for the device) and the training row is written.
    callbacks = [OptimizerModes(), memory, LayerStatistics(rows, memory, every=trainer_config.layer_stats_every_n_steps),
                 guard, timing, rows, ValidateLastStep(), stop_at_target, noise_scale, checkpoint, stop, progress]
    trainer = _trainer(config, store, [c for c in callbacks if c is not None])
    return Run(config=config, store=store, module=module, data=data, lr=lr, batch=batch, target=target,
               trainer=trainer, rows=rows, guard=guard, timing=timing, memory=memory, stop=stop,
               stop_at_target=stop_at_target, noise_scale=noise_scale)


def _trainer(config: DictConfig, store: RunStore, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer of the run; Lightning checks precision, accelerator, strategy... here, before
    anything is written, and a refusal is a ``ConfigError``."""
    try:
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
            logger=False,  # MetricRows logs to the store and wandb, at the same steps
            callbacks=callbacks,
            enable_progress_bar=False,  # experiments.callbacks.progress reports instead
            enable_model_summary=False,
            deterministic=False,
        )
    except (MisconfigurationException, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    _check_precision(config, trainer)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a strategy with its own format keeps it
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer


def _check_precision(config: DictConfig, trainer: pl.Trainer) -> None:
    """Refuse a precision Lightning would replace (16-mixed runs as bf16-mixed on a CPU; "32" is
    32-true): config.yaml, and so the run_id, must say what the run computes."""
    if trainer.precision != config.trainer.precision:
        raise ConfigError(
            f"trainer.precision={config.trainer.precision} runs as {trainer.precision} on "
            f"{trainer.strategy.root_device.type}: set trainer.precision={trainer.precision}, "
            "so the run records what it computes"
        )


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


def fit(run: Run) -> tuple[str, Optional[str]]:
    """Train ``run`` (from its last checkpoint, if any); return the status it ended with and the
    error of a failed run.

    An exception is a failed run (recorded; the caller decides whether to go on); a diverged run
    is ``diverged``; a run that stopped short of its budget without reaching its target is
    ``interrupted``. A signal (or Lightning's own SIGTERM handling) writes the ``interrupted``
    summary here and raises ``Interrupted``, naming the signal.
    """
    store, trainer = run.store, run.trainer
    chosen = choose_resume(store, set_aside=trainer.is_global_zero)
    resume = chosen.path
    if trainer.is_global_zero:
        if chosen.unreadable:
            log.warning(chosen.notice(store))
        store.begin(to_yaml(recorded(run.config)), {**collect_meta(), **chosen.meta(store)}, resume=resume is not None)
        resuming = f" (resuming from {resume.relative_to(store.root)})" if resume else ""
        log.info(f"run directory: {store.root}{resuming}")
    status, error = COMPLETED, None
    try:
        trainer.fit(run.module, run.data, ckpt_path=str(resume) if resume else None)
    except (Interrupted, SystemExit) as exc:  # SIGTERM reaches here as Lightning's SIGTERMException
        received = run.stop.received
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted(received) if received else None
        if trainer.is_global_zero:
            store.finish(_summary(run, INTERRUPTED, str(interrupted or f"stopped by {type(exc).__name__}")))
        if interrupted is not None:
            raise interrupted from None
        raise
    except Exception as exc:
        status, error = FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0]
    reached_target = run.stop_at_target is not None and run.stop_at_target.reached_at is not None
    if run.guard.diverged_at is not None:
        status = DIVERGED
    elif status == COMPLETED and trainer.global_step < run.config.trainer.max_steps and not reached_target:
        status = INTERRUPTED
    return status, error


def finish(run: Run, status: str, error: Optional[str]) -> Optional[dict[str, Any]]:
    """Write the run's summary (global rank 0; None elsewhere) and close its wandb run."""
    if not run.trainer.is_global_zero:
        return None
    summary = run.store.finish(_summary(run, status, error))
    wandb_logger = run.rows.wandb
    if wandb_logger is not None:
        wandb_logger.experiment.summary.update(summary)  # nested best/final read back as dicts
        wandb_logger.finalize(status)
        import wandb

        wandb.finish()
    return summary


def _summary(run: Run, status: str, error: Optional[str]) -> dict[str, Any]:
    """The summary.json of ``run``, from what its callbacks tracked (none of it read back from
    the store): final values, best and steps-to-target of the validation metric, timings, memory."""
    config, module, trainer = run.config, run.module, run.trainer
    curve = run.rows.curve(run.metric)
    return {
        "status": status,
        "error": error,
        "run_id": run.store.root.name,
        "task": module.info.name,
        "optimizer": config.optimizer.name,
        "optimizer_resolved": resolved_optimizer(config),  # its path, package, version and options
        "lr": run.lr,
        "effective_batch_size": run.batch,
        "seed": config.seed,
        "global_step": trainer.global_step,
        "diverged_at_step": run.guard.diverged_at,
        "metric": run.metric,
        "higher_is_better": module.info.higher_is_better,
        "final": {k: finite_or_none(v) for k, v in run.rows.final.items()},
        "best": {run.metric: best((value for _, value in curve), module.info.higher_is_better)},
        "target": run.target,
        "steps_to_target": steps_to_target(curve, run.target, module.info.higher_is_better),
        "wall_time_s": run.rows.elapsed(),
        "train_step_time_s": run.timing.timer.mean(),
        "throughput_samples_per_s": run.timing.throughput(),
        "peak_memory_bytes": run.memory.peak(),
        # Measured at the end: the state of a run resumed from its final checkpoint is restored
        # from it, though no step runs.
        "optimizer_state_bytes": optimizer_state_bytes(trainer.optimizers[0]) if trainer.optimizers else 0,
        "num_parameters": sum(p.numel() for p in module.model.parameters() if p.requires_grad),
        "grad_noise_scale": run.noise_scale.estimator.simple if run.noise_scale is not None else None,
    }


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
    """A WandbLogger that MetricRows logs through (never handed to the Trainer: Lightning would
    log rank 0's loss at its own cadence). Named by the run_id, grouped by the study."""
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(
        project=config.logger.project, entity=config.logger.entity, group=config.study,
        tags=[config.optimizer.name, task_info(config.task).name, *config.logger.tags], name=store.run_id,
        id=wandb_run_id(store, force), save_dir=str(store.root), mode=config.logger.wandb, resume="allow",
        config=OmegaConf.to_container(config, resolve=True),
    )


