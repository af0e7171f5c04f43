"""Training as a recipe: ``build_run`` sets everything up, ``train_steps`` runs the optimisation, ``train`` ties
them together with checkpoints, evaluation and fault handling.

Determinism: the sample order of epoch e is a permutation seeded by (seed, e), and every sample's augmentation
is seeded by (seed, e, index), so a resumed run sees exactly the batches the uninterrupted run would have seen,
whatever the number of loader workers.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from segkit.data.datasets import SampleSource, TrainDataset, build_source, collate
from segkit.data.transforms import normalize
from segkit.engine.checkpoint import FORMAT_VERSION, atomic_save, read_checkpoint, restore_rng_state, rng_state
from segkit.engine.config import ExperimentConfig, from_dict, save_config, to_dict
from segkit.engine.evaluate import PRIMARY_METRIC, evaluate, make_net
from segkit.engine.inference import InferenceSettings
from segkit.engine.precision import autocast, bf16_supported
from segkit.errors import SegkitError
from segkit.models import create_model


class TrainingDiverged(SegkitError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------- distributed set-up


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """torchrun's environment -> a process group (NCCL on GPU, gloo on CPU); a single process otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def pick_device(info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


# ---------------------------------------------------------------- data


class StreamSampler(Sampler):
    """(epoch, index) pairs from a given epoch and position on, forever.

    Epoch e is a permutation seeded by (seed, e), sharded equally across processes and cut to whole optimiser
    steps, so batches never straddle epochs and every process runs the same number of steps.
    """

    def __init__(self, size: int, seed: int, info: DistInfo, samples_per_step: int) -> None:
        self.size, self.seed, self.info = size, seed, info
        per_rank = size // info.world_size
        self.per_epoch = per_rank - per_rank % samples_per_step
        self.start_epoch, self.start_offset = 0, 0

    def epoch_indices(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        shard = order[self.info.rank :: self.info.world_size]
        return shard[: self.per_epoch]

    def __iter__(self):
        epoch, offset = self.start_epoch, self.start_offset
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0


class SeededTrainDataset(TrainDataset):
    """Takes (epoch, index) keys and seeds each sample's augmentation by (seed, epoch, index)."""

    def __init__(self, source: SampleSource, image_size_px: int, seed: int) -> None:
        super().__init__(source, image_size_px)
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.transform.set_random_seed((self.seed * 1_000_003 + epoch * 100_003 + index) % 2**32)
        return super().__getitem__(index)


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the loader's parallelism is its worker processes


# ---------------------------------------------------------------- losses


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft IoU loss (Rahman & Wang 2016) per image, averaged: sharpens boundaries alongside BCE."""
    prob = logits.sigmoid()
    inter = (prob * target).sum((1, 2, 3))
    union = (prob + target - prob * target).sum((1, 2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def compute_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if kind == "ce":
        return F.cross_entropy(logits, target, ignore_index=255)
    elif kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    elif kind == "bce_iou":
        return F.binary_cross_entropy_with_logits(logits, target) + iou_loss(logits, target)
    else:
        raise SegkitError(f"unknown loss '{kind}'")


def loss_kind(config: ExperimentConfig) -> str:
    if config.loss != "auto":
        return config.loss
    return "bce_iou" if config.task == "saliency" else "ce"


# ---------------------------------------------------------------- schedule


def lr_factor(step: int, total: int, config: ExperimentConfig) -> float:
    """Linear warm-up, then poly ((1 - t)^power) or cosine decay to 0 at ``total``."""
    s = config.schedule
    if s.warmup_steps and step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    t = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
    if s.policy == "poly":
        return (1 - t) ** s.poly_power
    return 0.5 * (1 + math.cos(math.pi * t))


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    """Everything a training run holds."""

    config: ExperimentConfig
    info: DistInfo
    device: torch.device
    model: nn.Module  # possibly DDP-wrapped
    raw_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_set: SeededTrainDataset
    sampler: StreamSampler
    val_source: SampleSource
    out: Path
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    best: float = -math.inf


def default_run_dir(config: ExperimentConfig) -> Path:
    name = config.name or f"{config.task}_{config.model.backbone}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(config.out_dir) / name


def build_model(config: ExperimentConfig, num_classes: int) -> nn.Module:
    return create_model(
        config.task,
        backbone=config.model.backbone,
        num_classes=config.model.num_classes or num_classes,
        output_stride=config.model.output_stride,
        pretrained_backbone=config.model.pretrained_backbone,
        decoder_channels=config.model.decoder_channels,
    )


def _param_groups(model: nn.Module, config: ExperimentConfig) -> list[dict]:
    backbone = [p for n, p in model.named_parameters() if ".backbone." in f".{n}" and p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    return [
        {"params": backbone, "lr": config.optim.lr * config.optim.backbone_lr_mult},
        {"params": rest, "lr": config.optim.lr},
    ]


def build_run(config: ExperimentConfig, out: Path, info: DistInfo) -> Run:
    device = pick_device(info)
    torch.manual_seed(config.seed)
    train_source = build_source(config.task, config.data.root, "train", config.data.images, config.data.masks)
    val_source = build_source(config.task, config.data.root, "val") if not config.data.images else train_source
    if len(train_source) < config.data.batch_size * info.world_size:
        raise SegkitError(
            f"the training set has {len(train_source)} samples, fewer than one batch "
            f"(data.batch_size={config.data.batch_size} x {info.world_size} processes)"
        )
    raw_model = build_model(config, train_source.num_classes).to(device)
    if info.world_size > 1 and config.sync_bn and device.type == "cuda":  # PyTorch's SyncBatchNorm is GPU-only
        raw_model = nn.SyncBatchNorm.convert_sync_batchnorm(raw_model)
    if config.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    model = raw_model
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[info.local_rank] if device.type == "cuda" else None
        )
    groups = _param_groups(raw_model, config)
    if config.optim.name == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=config.optim.weight_decay)
    train_set = SeededTrainDataset(train_source, config.data.image_size, config.seed)
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, config))
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling; kept for fp16 resumes
    return Run(
        config,
        info,
        device,
        model,
        raw_model,
        optimizer,
        scheduler,
        scaler,
        train_set,
        sampler,
        val_source,
        out,
        total,
        steps_per_epoch,
    )


def checkpoint_payload(run: Run) -> dict:
    return {
        "format": FORMAT_VERSION,
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "step": run.step,
        "epoch": run.step // run.steps_per_epoch,
        "best": run.best,
        "rng": rng_state(),
        "config": to_dict(run.config),
        "task": run.config.task,
        "num_classes": int(getattr(run.raw_model, "num_classes", 1)),
        "class_names": list(getattr(run.val_source, "class_names", ())),
    }


def save(run: Run, name: str) -> None:
    sync_buffers(run)  # collective: every process calls save
    if run.info.is_main:
        atomic_save(checkpoint_payload(run), run.out / name)


def resume(run: Run, path: Path) -> None:
    ckpt = read_checkpoint(path)
    run.raw_model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.step, run.best = int(ckpt["step"]), float(ckpt["best"])
    restore_rng_state(ckpt["rng"])


def batches(run: Run):
    """Training batches from the run's current step on (one loader for the whole run, workers kept alive)."""
    samples_per_step = run.config.data.batch_size * run.config.schedule.grad_accum
    epoch, step_in_epoch = divmod(run.step, run.steps_per_epoch)
    run.sampler.start_epoch, run.sampler.start_offset = epoch, step_in_epoch * samples_per_step
    workers = run.config.data.workers
    loader = DataLoader(
        run.train_set,
        batch_size=run.config.data.batch_size,
        sampler=run.sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        # forkserver: forking a process that already runs CUDA and OpenMP threads can deadlock the workers
        multiprocessing_context="forkserver" if workers and sys.platform != "win32" else None,
    )
    return iter(loader)


def train_step(run: Run, batches) -> float:
    """One optimiser step over ``grad_accum`` batches; returns the mean loss."""
    cfg = run.config
    kind = loss_kind(cfg)
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(cfg.schedule.grad_accum):
        batch = next(batches)
        if "bad" in batch:
            raise SegkitError(
                f"bad training sample: {batch['bad'][0]}. Fix or remove the file "
                "(segkit data check ROOT --task ... lists every problem)"
            )
        images = normalize(batch["image"].to(run.device, non_blocking=True))
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = batch["mask"].to(run.device, non_blocking=True)
        with autocast(run.device, enabled=cfg.amp):
            logits = run.model(images)
        loss = compute_loss(kind, logits, target)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {run.step + 1}; the last good checkpoint is kept in "
                f"{run.out}. Lower optim.lr (now {cfg.optim.lr}) or add schedule.warmup_steps, then --resume"
            )
        (loss / cfg.schedule.grad_accum).backward()
        total += loss.item()
    if cfg.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    return total / cfg.schedule.grad_accum


def sync_buffers(run: Run) -> None:
    """Give every process rank 0's BatchNorm statistics. DDP broadcasts buffers at the start of each forward, so
    after the last step each process holds its own batch's update; without SyncBatchNorm (CPU) they differ."""
    if run.info.world_size > 1:
        for buffer in run.raw_model.buffers():
            dist.broadcast(buffer, 0)


def run_evaluation(run: Run) -> dict:
    sync_buffers(run)
    cfg = run.config
    settings = InferenceSettings(
        task=cfg.task,
        size_multiple=max(16, run.raw_model.output_stride) if cfg.task == "segmentation" else 32,
        saliency_size_px=cfg.data.eval_size or cfg.data.image_size,
        tta=cfg.eval.tta,
        device=str(run.device),
    )
    net = make_net(run.raw_model, str(run.device), amp=cfg.amp)
    scores = evaluate(
        net,
        run.val_source,
        settings,
        run.raw_model.num_classes,
        run.info.rank,
        run.info.world_size,
        cfg.eval.max_images,
    )
    run.model.train()
    return scores


def _record(run: Run, scores: dict, loss: float) -> bool:
    """Append to metrics.csv, keep best.pt; returns whether this evaluation is the best so far."""
    key = PRIMARY_METRIC[run.config.task]
    improved = scores[key] > run.best
    if improved:
        run.best = scores[key]
    if not run.info.is_main:
        return improved
    row = {"step": run.step, "epoch": run.step // run.steps_per_epoch, "loss": round(loss, 6)}
    row.update({k: round(v, 6) for k, v in scores.items() if isinstance(v, float)})
    path = run.out / "metrics.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    return improved


class _Progress:
    """A tqdm bar on a terminal; plain log lines every ``log_interval`` steps otherwise. Both go to the log too."""

    def __init__(self, run: Run, log) -> None:
        self.run, self.log = run, log
        self.tty = sys.stderr.isatty() and run.info.is_main
        self.bar = None
        self.start, self.start_step = time.perf_counter(), run.step
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=run.total_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)

    def update(self, loss: float) -> None:
        run = self.run
        lr = run.optimizer.param_groups[-1]["lr"]
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if run.step % run.config.log_interval == 0 or run.step == run.total_steps:
            rate = (run.step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
            eta = (run.total_steps - run.step) / max(rate, 1e-9)
            self.log(
                f"step {run.step}/{run.total_steps} epoch {run.step // run.steps_per_epoch} loss {loss:.4f} "
                f"lr {lr:.2e} {rate:.2f} step/s eta {eta:.0f}s",
                echo=self.bar is None,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _logger(run: Run):
    path = run.out / "train.log"

    def log(message: str, echo: bool = True) -> None:
        if not run.info.is_main:
            return
        line = f"{datetime.now().strftime('%H:%M:%S')} {message}"
        with open(path, "a") as f:
            f.write(line + "\n")
        if echo:
            print(line, file=sys.stderr, flush=True)

    return log


def _tensorboard(run: Run):
    if not run.info.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run.out / "tb"))


def prepare_run_dir(config: ExperimentConfig, out: Path | None, resume_run: bool, info: DistInfo) -> Path:
    out = Path(out) if out else default_run_dir(config)
    if resume_run:
        if not (out / "last.pt").is_file():
            raise SegkitError(f"--resume: no last.pt in '{out}'; pass the run folder with --out")
        return out
    if (out / "last.pt").exists():
        raise SegkitError(f"run folder '{out}' already holds a run; pass --resume to continue it or another --out")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
    return out


def train(config: ExperimentConfig, out: Path | None = None, resume_run: bool = False) -> dict:
    """Train, evaluate at the interval and at the end, keep last.pt and best.pt; returns the final scores."""
    info = init_distributed()
    out = prepare_run_dir(config, out, resume_run, info)
    if resume_run:
        config = from_dict(ExperimentConfig, read_checkpoint(out / "last.pt")["config"])
    run = build_run(config, out, info)
    log = _logger(run)
    if resume_run:
        resume(run, out / "last.pt")
        log(f"resumed {out / 'last.pt'} at step {run.step}")
    precision = "bf16 autocast" if config.amp and bf16_supported(run.device) else "fp32"
    log(
        f"task {config.task}, backbone {config.model.backbone}, {len(run.train_set)} training samples, "
        f"{run.total_steps} steps ({run.steps_per_epoch}/epoch), device {run.device} ({precision}), "
        f"{info.world_size} process(es); run folder {out}"
    )
    tb = _tensorboard(run)
    progress = _Progress(run, log)
    stream = batches(run)
    loss = float("nan")
    interrupted = False
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
    try:
        while run.step < run.total_steps:
            loss = train_step(run, stream)
            progress.update(loss)
            if tb:
                tb.add_scalar("train/loss", loss, run.step)
            if config.eval.checkpoint_interval_steps and run.step % config.eval.checkpoint_interval_steps == 0:
                save(run, "last.pt")
            if config.eval.interval_steps and run.step % config.eval.interval_steps == 0 < run.total_steps - run.step:
                _evaluate_and_record(run, loss, log, tb)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if interrupted:
        save(run, "last.pt")
        log(
            f"interrupted at step {run.step}: saved {out / 'last.pt'}; continue with "
            f"`segkit train --task {config.task} --out {out} --resume`"
        )
        raise KeyboardInterrupt
    save(run, "last.pt")
    scores = _evaluate_and_record(run, loss, log, tb)
    if tb:
        tb.close()
    if info.world_size > 1:
        dist.barrier()
    return scores


def _evaluate_and_record(run: Run, loss: float, log, tb) -> dict:
    scores = run_evaluation(run)
    improved = _record(run, scores, loss)
    if improved or not (run.out / "best.pt").exists():
        save(run, "best.pt")
    key = PRIMARY_METRIC[run.config.task]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
    log(f"eval at step {run.step}: {shown}" + (" (best so far)" if improved else ""))
    if tb:
        for k, v in scores.items():
            if isinstance(v, float):
                tb.add_scalar(f"val/{k}", v, run.step)
    scores["best_" + key] = run.best
    return scores


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
