"""What a training run tells: train.log (and stderr), a progress bar or log lines, metrics.csv, TensorBoard.

Only the main process writes; the others get no-op writers.
"""

from __future__ import annotations

import csv
import sys
import time
from datetime import datetime
from pathlib import Path


class RunLog:
    """Timestamped lines appended to ``train.log`` and echoed to stderr."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def __call__(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        line = f"{datetime.now().strftime('%H:%M:%S')} {message}"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if echo:
            print(line, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar on a terminal; plain log lines every ``log_interval`` steps otherwise. Both go to the log."""

    def __init__(self, log: RunLog, start_step: int, total_steps: int, steps_per_epoch: int, log_interval: int):
        self.log, self.total, self.per_epoch, self.interval = log, total_steps, steps_per_epoch, log_interval
        self.start, self.start_step = time.perf_counter(), start_step
        self.bar = None
        if sys.stderr.isatty() and log.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if step % self.interval == 0 or step == self.total:
            rate = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            self.log(
                f"step {step}/{self.total} epoch {step // self.per_epoch} loss {loss:.4f} "
                f"lr {lr:.2e} {rate:.2f} step/s eta {eta:.0f}s",
                echo=self.bar is None,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def append_metrics_csv(path: Path, row: dict) -> None:
    """One row of ``metrics.csv`` (the header is written with the first row)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


class Scalars:
    """TensorBoard scalars when tensorboard is installed (an optional extra); otherwise nothing."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.writer = SummaryWriter(str(folder))

    def add(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
