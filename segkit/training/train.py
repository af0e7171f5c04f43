"""Training as a recipe: ``build_run`` sets everything up, ``train_one_step`` is one optimiser step, ``train``
is the loop with its checkpoints, evaluations and fault handling.

The pieces live beside it: ``distributed`` (process group, DDP), ``loader`` (sources, the resumable sample
stream), ``losses``, ``optim`` (optimiser and schedule), ``runlog`` (log, progress, metrics.csv, TensorBoard).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.accel.hardware import bf16_pays
from segkit.accel.precision import autocast, training_precision
from segkit.config import ExperimentConfig, save_config, to_dict
from segkit.data.transforms import normalize
from segkit.errors import SegkitError
from segkit.evaluation.evaluate import evaluate
from segkit.inference.checkpoint import read_checkpoint
from segkit.inference.pipeline import inference_settings, torch_net
from segkit.models import model_from_config
from segkit.models.losses import get_loss
from segkit.tasks import Task, get_task
from segkit.training.checkpoint import FORMAT_VERSION, atomic_save, restore_rng_state, rng_state
from segkit.training.distributed import DistInfo, barrier, init_distributed, pick_device, sync_buffers, wrap_model
from segkit.training.loader import (
    SeededTrainDataset,
    StreamSampler,
    batch_stream,
    build_sources,
    check_before_training,
)
from segkit.training.optim import build_optimizer, build_scheduler
from segkit.training.runfolder import RunFolderLock, Signals
from segkit.training.runlog import Progress, RunLog, Scalars, append_metrics_csv

# Keys a resumed run may change (``--resume --set KEY=VALUE``): how long it runs, its learning rate, and how often
# it evaluates, saves and logs. Every other key would no longer describe last.pt's weights or its data stream.
RESUMABLE_KEYS = (
    "optim.lr", "schedule.max_steps", "schedule.epochs", "eval.interval_steps", "eval.checkpoint_interval_steps",
    "eval.max_images", "log_interval", "data.workers",
)  # fmt: skip
# A parameter beyond this is taken as exploded (trained networks' weights stay within about 10): such weights are
# never written to a checkpoint.
EXPLODED_WEIGHT = 1e6


class TrainingDiverged(SegkitError):
    """The loss became NaN or infinite."""


@dataclass
class Run:
    """Everything a training run holds."""

    config: ExperimentConfig
    task: Task
    info: DistInfo
    device: torch.device
    model: nn.Module  # what is trained: the network, DDP-wrapped when distributed
    net: nn.Module  # the network itself: checkpoints and evaluation
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: object
    train_set: SeededTrainDataset
    sampler: StreamSampler
    val_source: object
    out: Path
    total_steps: int
    steps_per_epoch: int
    data_note: str | None = None
    step: int = 0
    best: float = -math.inf
    signals: Signals | None = None  # a checkpoint is written with SIGTERM and SIGINT deferred
    saved: dict | None = None  # checkpoint name -> the step it holds, as written by this process


@dataclass
class TrainResult:
    """What ``train`` returns: the run folder, the final validation scores and the best primary metric."""

    run_dir: Path
    task: str
    scores: object  # SaliencyScores or SegmentationScores
    best: float


def default_run_dir(config: ExperimentConfig) -> Path:
    name = config.name or f"{config.task}_{config.model.backbone}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(config.out_dir) / name


def build_run(config: ExperimentConfig, out: Path, info: DistInfo) -> Run:
    task = get_task(config.task)
    device = pick_device(info)
    torch.manual_seed(config.seed)
    sources = build_sources(task, config.data, config.seed, config.model.num_classes)
    check_before_training(sources)
    if len(sources.train) < config.data.batch_size * info.world_size:
        raise SegkitError(
            f"the training set has {len(sources.train)} samples, fewer than one batch "
            f"(data.batch_size={config.data.batch_size} x {info.world_size} processes)"
        )
    net = model_from_config(task.name, config.model, sources.train.num_classes).to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if config.model.freeze_bn:
        freeze_batchnorm(net)
    model = wrap_model(net, info, device, config.sync_bn and not config.model.freeze_bn)
    optimizer = build_optimizer(net, config.optim)
    train_set = SeededTrainDataset(sources.train, task, config.data.image_size, config.seed, config.data.augment)
    samples_per_step = config.data.batch_size * config.schedule.grad_accum
    sampler = StreamSampler(len(train_set), config.seed, info, samples_per_step)
    if sampler.per_epoch == 0:
        raise SegkitError(
            f"the training set ({len(train_set)} samples) is smaller than one optimiser step "
            f"(batch {config.data.batch_size} x grad_accum {config.schedule.grad_accum} x "
            f"{info.world_size} processes)"
        )
    steps_per_epoch = sampler.per_epoch // samples_per_step
    total = config.schedule.max_steps or max(1, config.schedule.epochs) * steps_per_epoch
    scheduler = build_scheduler(optimizer, total, config.schedule, steps_per_epoch)
    loss_fn = get_loss(task.default_loss if config.loss == "auto" else config.loss)
    return Run(
        config, task, info, device, model, net, optimizer, scheduler, loss_fn, train_set, sampler,
        sources.val, out, total, steps_per_epoch, sources.note,
    )  # fmt: skip


# ---------------------------------------------------------------- checkpoints


def checkpoint_payload(run: Run, resumable: bool) -> dict:
    """What a checkpoint holds: the model, its config and what a loader needs; a resumable one (last.pt) also the
    optimiser, schedule and random states (three times the size with AdamW)."""
    payload = {
        "format": FORMAT_VERSION,
        "model": run.net.state_dict(),
        "step": run.step,
        "epoch": run.step // run.steps_per_epoch,
        "best": run.best,
        "config": to_dict(run.config),
        "task": run.task.name,
        "num_classes": int(getattr(run.net, "num_classes", 1)),
        "class_names": list(run.val_source.class_names),
        "trained_precision": "bf16" if run.config.amp and bf16_pays(run.device) else "fp32",
    }
    if resumable:
        payload |= {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": rng_state(),
        }
    return payload


def save(run: Run, name: str) -> None:
    """Write ``name`` in the run folder: last.pt resumable, best.pt (and any other) weights and config only. Weights
    that are not finite, or exploded, are refused before anything is written (``TrainingDiverged``); a signal that
    comes while the file is written is raised once it is complete."""
    sync_buffers(run.net, run.info)  # collective: every process calls save
    problem = weights_problem(run.net)
    if problem:
        raise TrainingDiverged(f"the weights {problem} at step {run.step}, so they were not saved")
    with run.signals.deferred() if run.signals else contextlib.nullcontext():
        if run.info.is_main:
            atomic_save(checkpoint_payload(run, resumable=name == "last.pt"), run.out / name)
        run.saved = {**(run.saved or {}), name: run.step}


def weights_problem(net: nn.Module) -> str | None:
    """What is wrong with the network's parameters for a checkpoint (not finite, or exploded), or None."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not torch.isfinite(p).all():
                return f"became non-finite ({name})"
            if p.numel() and p.abs().max() > EXPLODED_WEIGHT:
                return f"exploded ({name} reached {p.abs().max().item():.3g})"
    return None


def folder_state(run: Run) -> str:
    """What the run folder holds now, in words (for a message after a failure)."""
    held = []
    for name in ("last.pt", "best.pt"):
        if (run.out / name).is_file():
            step = (run.saved or {}).get(name)
            held.append(f"{name}" + (f" (step {step})" if step is not None else " (from before this process)"))
    return f"{run.out} holds {' and '.join(held)}" if held else f"no checkpoint was written in {run.out}"


def resume(run: Run, path: Path) -> None:
    """Weights, optimiser, schedule and random states from last.pt; a learning rate changed on resume
    (``--set optim.lr=...``) scales the schedule from the step reached."""
    ckpt = read_checkpoint(path)
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.step, run.best = int(ckpt["step"]), float(ckpt["best"])
    restore_rng_state(ckpt["rng"])
    saved_lr = float(ckpt["config"]["optim"]["lr"])
    if run.config.optim.lr != saved_lr:
        factor = run.config.optim.lr / saved_lr
        run.scheduler.base_lrs = [lr * factor for lr in run.scheduler.base_lrs]
        for group in run.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
    run.saved = {"last.pt": run.step}


# ---------------------------------------------------------------- one step, one evaluation


def batches(run: Run):
    """Training batches from the run's current step on."""
    samples_per_step = run.config.data.batch_size * run.config.schedule.grad_accum
    epoch, step_in_epoch = divmod(run.step, run.steps_per_epoch)
    run.sampler.start_epoch, run.sampler.start_offset = epoch, step_in_epoch * samples_per_step
    cfg = run.config.data
    return batch_stream(run.train_set, run.sampler, cfg.batch_size, cfg.workers, pin=run.device.type == "cuda")


def train_one_step(run: Run, stream) -> float:
    """One training step: ``grad_accum`` batches, and an optimiser step on them at each of ``schedule.scales``
    (PraNet's multi-scale training: 0.75, 1 and 1.25 x the size, sides rounded to a multiple of 32); returns the
    mean loss."""
    cfg = run.config
    set_train_mode(run.model, cfg.model.freeze_bn)
    batches = [_device_batch(run, next(stream)) for _ in range(cfg.schedule.grad_accum)]
    total = 0.0
    for scale in cfg.schedule.scales:
        run.optimizer.zero_grad(set_to_none=True)
        for images, target in batches:
            images, target = rescale_batch(images, target, scale, cfg.data.image_size)
            with autocast(run.device, enabled=cfg.amp):
                logits = run.model(images)
            loss = run.loss_fn(logits, target)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss.item()} at step {run.step + 1}")
            (loss / cfg.schedule.grad_accum).backward()
            total += loss.item()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
        if cfg.optim.grad_clip_value:
            torch.nn.utils.clip_grad_value_(run.model.parameters(), cfg.optim.grad_clip_value)
        run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    return total / (cfg.schedule.grad_accum * len(cfg.schedule.scales))


def _device_batch(run: Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch as (normalised images, targets) on the run's device."""
    if "bad" in batch:
        raise SegkitError(
            f"bad training sample: {batch['bad'][0]}. Fix or remove the file (segkit data check ROOT --task ..., "
            "or --images DIR --masks DIR, lists every problem)"
        )
    images = normalize(batch["image"].to(run.device, non_blocking=True))
    if run.config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["mask"].to(run.device, non_blocking=True)


def rescale_batch(
    images: torch.Tensor, target: torch.Tensor, scale: float, size_px: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and targets resized to a square of ``round(size_px x scale / 32) x 32`` (as PraNet's training
    script: bilinear with ``align_corners=True``; class ids nearest); as they are at scale 1."""
    if scale == 1.0:
        return images, target
    side = max(32, int(round(size_px * scale / 32)) * 32)
    images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=True)
    if target.is_floating_point():  # grey-level targets (B, 1, H, W)
        return images, F.interpolate(target, size=(side, side), mode="bilinear", align_corners=True)
    ids = F.interpolate(target[:, None].float(), size=(side, side), mode="nearest")  # class ids (B, H, W)
    return images, ids[:, 0].to(target.dtype)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode, with every BatchNorm in eval mode when ``freeze_bn`` (its statistics and affine parameters
    stay as loaded: Res2Net-PoolNet trains so, ``use_global_stats``)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm's affine parameters out of the optimiser (``requires_grad=False``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)


def validate(run: Run):
    """The task's scores on the validation source (split across processes)."""
    sync_buffers(run.net, run.info)
    cfg = run.config
    settings = inference_settings(run.task.name, run.net, cfg, cfg.eval.tta, str(run.device))
    net = torch_net(run.net, str(run.device), bf16=cfg.amp)
    scores = evaluate(
        net, run.val_source, settings, run.net.num_classes, run.info.rank, run.info.world_size, cfg.eval.max_images
    )
    run.model.train()
    return scores


def validate_and_keep_best(run: Run, loss: float, log: RunLog, scalars: Scalars):
    """Validate, append metrics.csv, write best.pt when the primary metric improved; returns the scores."""
    scores = validate(run)
    values = scores.scalars()
    key = run.task.primary_metric
    improved = values[key] > run.best
    if improved:
        run.best = values[key]
    if run.info.is_main:
        row = {"step": run.step, "epoch": run.step // run.steps_per_epoch, "loss": round(loss, 6)}
        append_metrics_csv(run.out / "metrics.csv", row | {k: round(v, 6) for k, v in values.items()})
    if improved or not (run.out / "best.pt").exists():
        save(run, "best.pt")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
    log(f"eval at step {run.step}: {shown}" + (" (best so far)" if improved else ""))
    scalars.add(values, run.step, "val")
    return scores


# ---------------------------------------------------------------- the run


def choose_run_dir(config: ExperimentConfig | None, out: Path | None, resume_run: bool) -> Path:
    """The run folder, checked (a new run never writes into a finished one); nothing is created here."""
    out = Path(out) if out else default_run_dir(config)
    if resume_run:
        if not (out / "last.pt").is_file():
            raise SegkitError(f"--resume: no last.pt in '{out}'; pass the run folder with --out")
    elif (out / "last.pt").exists():
        raise SegkitError(f"run folder '{out}' already holds a run; pass --resume to continue it or another --out")
    return out


def train(
    config: ExperimentConfig | None,
    out: Path | None = None,
    resume_run: bool = False,
    resume_set: list[str] | tuple[str, ...] = (),
) -> TrainResult:
    """Train, evaluate at the interval and at the end, keep last.pt and best.pt. ``resume_run``: continue the run
    in ``out`` from its last.pt, with its own config (``config`` is not used) changed by ``resume_set``
    (``KEY=VALUE``, keys of ``RESUMABLE_KEYS``). The run folder is locked for the run's life (``RunFolderLock``);
    SIGTERM and SIGINT end it with last.pt saved (``Interrupted``)."""
    info = init_distributed()
    out = Path(out) if out else default_run_dir(config)
    lock = RunFolderLock(out) if info.is_main else None
    with Signals() as signals:
        try:
            if lock is not None:
                lock.acquire()
            return _train(config, out, resume_run, resume_set, info, signals, lock)
        finally:
            if lock is not None:
                lock.release()


def _train(config, out: Path, resume_run: bool, resume_set, info: DistInfo, signals: Signals, lock) -> TrainResult:
    choose_run_dir(config, out, resume_run)  # checked once the folder is ours
    if resume_run:
        config = resumed_config(read_checkpoint(out / "last.pt")["config"], list(resume_set))
    run = build_run(config, out, info)  # data and model first: a run that cannot start leaves no folder behind
    run.signals = signals
    if info.is_main and not resume_run:
        save_config(config, out / "config.yaml")
    log = RunLog(out / "train.log", enabled=info.is_main)
    if lock is not None and lock.removed_temporaries:
        log(f"removed what a killed run left half-written: {', '.join(lock.removed_temporaries)}")
    if resume_run:
        resume(run, out / "last.pt")
        log(f"resumed {out / 'last.pt'} at step {run.step}" + (f" with {', '.join(resume_set)}" if resume_set else ""))
    _log_start(run, log)
    scalars = Scalars(out / "tb", enabled=info.is_main)
    try:
        loss = _loop(run, log, scalars)
        save(run, "last.pt")  # before the final evaluation: a signal during it finds last.pt complete
        scores = validate_and_keep_best(run, loss, log, scalars)
    except KeyboardInterrupt as stop:
        if (run.saved or {}).get("last.pt") != run.step:
            save(run, "last.pt")
        log(
            f"interrupted ({stop.args[0] if stop.args else 'Ctrl-C'}) at step {run.step}: saved {out / 'last.pt'}; "
            f"continue with `segkit train --task {config.task} --out {out} --resume`"
        )
        raise
    except TrainingDiverged as err:
        advice = (
            f"lower optim.lr (now {run.config.optim.lr}) or add schedule.warmup_steps, and start again; or resume "
            f"from last.pt with `--resume --set optim.lr=...`"
            if (out / "last.pt").is_file() else
            f"lower optim.lr (now {run.config.optim.lr}) or add schedule.warmup_steps, and start again"
        )  # fmt: skip
        message = f"{err}; {folder_state(run)}. {advice[0].upper()}{advice[1:]}"
        log(f"stopped at step {run.step}: {message}")
        raise TrainingDiverged(message) from None
    except SegkitError as err:
        save(run, "last.pt")
        log(f"stopped at step {run.step}: {err}")
        raise
    scalars.close()
    barrier(info)
    return TrainResult(out, run.task.name, scores, run.best)


def resumed_config(saved: dict, overrides: list[str]) -> ExperimentConfig:
    """last.pt's experiment config with ``overrides`` applied: keys of ``RESUMABLE_KEYS`` change; ``task`` must be
    the run's own; any other key is refused by name (it would no longer describe the saved weights)."""
    from segkit.config import load_config

    changed = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key == "task":
            if value != saved.get("task"):
                raise SegkitError(f"--resume: this run is a {saved.get('task')} run, but --task {value} was given")
            continue
        if key not in RESUMABLE_KEYS:
            raise SegkitError(
                f"--resume: config key '{key}' cannot change when a run is resumed (last.pt's weights and data "
                f"stream were made with its own value); keys that can: {', '.join(RESUMABLE_KEYS)}"
            )
        changed.append(item)
    return load_config(None, changed, base=saved)


def _log_start(run: Run, log: RunLog) -> None:
    cfg = run.config
    precision = training_precision(run.device, cfg.amp)
    log(
        f"task {run.task.name}, backbone {cfg.model.backbone}, {len(run.train_set)} training samples, "
        f"{run.total_steps} steps ({run.steps_per_epoch}/epoch), device {run.device} ({precision}), "
        f"{run.info.world_size} process(es); run folder {run.out}"
    )
    if run.data_note:
        log(run.data_note)


def _loop(run: Run, log: RunLog, scalars: Scalars) -> float:
    """The optimisation loop; returns the last step's loss."""
    cfg = run.config
    progress = Progress(log, run.step, run.total_steps, run.steps_per_epoch, cfg.log_interval)
    stream = batches(run)
    loss = float("nan")
    try:
        while run.step < run.total_steps:
            loss = train_one_step(run, stream)
            progress.update(run.step, loss, run.optimizer.param_groups[-1]["lr"])
            scalars.add({"loss": loss}, run.step, "train")
            if cfg.eval.checkpoint_interval_steps and run.step % cfg.eval.checkpoint_interval_steps == 0:
                save(run, "last.pt")
            if cfg.eval.interval_steps and run.step % cfg.eval.interval_steps == 0 < run.total_steps - run.step:
                validate_and_keep_best(run, loss, log, scalars)
    finally:
        progress.close()
    return loss
