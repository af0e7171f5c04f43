"""Where the default run's time goes: a research script, outside the wheel.

    python benchmarks/default_run_profile.py [--steps 40] [--set KEY=VALUE ...] [--json FILE]

It builds the default saliency run (``segkit train --task saliency``'s configuration, changed by ``--set``) the way
``segkit train`` does, then times its parts one after another in one process: the set-up (built-in data, pre-flight,
network), ``--steps`` training steps split into the batch (data loading and augmentation), the forward pass with the
loss, and the backward pass with the optimiser step; one ``last.pt`` write; one validation pass. Each is scaled to
the whole run (the configuration's step count, checkpoint interval and evaluation interval), so the total estimates
the run's wall time without running it all, and says which part to change.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from segkit.accel.precision import autocast
from segkit.bench.backbone import machine_info
from segkit.config import default_config_path, load_config
from segkit.training.distributed import DistInfo
from segkit.training.train import _device_batch, batches, build_run, save, validate


def profile(steps: int, overrides: list[str]) -> dict:
    config = load_config(str(default_config_path("saliency")), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = build_run(config, Path(tmp), DistInfo())
        setup_s = time.perf_counter() - start
        stream = batches(run)
        data = forward = backward = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            images, target = _device_batch(run, next(stream))
            t1 = time.perf_counter()
            run.model.train()
            run.optimizer.zero_grad(set_to_none=True)
            with autocast(run.device, enabled=config.amp):
                logits = run.model(images)
            loss = run.loss_fn(logits, target)
            loss.item()
            t2 = time.perf_counter()
            loss.backward()
            run.optimizer.step()
            run.scheduler.step()
            run.step += 1
            t3 = time.perf_counter()
            data, forward, backward = data + t1 - t0, forward + t2 - t1, backward + t3 - t2
        t0 = time.perf_counter()
        save(run, "last.pt")
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        validate(run)
        validate_s = time.perf_counter() - t0
    total_steps = run.total_steps
    saves = total_steps // config.eval.checkpoint_interval_steps if config.eval.checkpoint_interval_steps else 0
    evals = 1 + (total_steps - 1) // config.eval.interval_steps if config.eval.interval_steps else 1
    parts = {
        "setup": setup_s,
        "data": data / steps * total_steps,
        "forward_and_loss": forward / steps * total_steps,
        "backward_and_step": backward / steps * total_steps,
        "checkpoints": save_s * (saves + evals),  # last.pt every interval, best.pt at each evaluation
        "evaluation": validate_s * evals,
    }
    return {
        "machine": machine_info(run.device),
        "config": {"overrides": overrides, "max_steps": total_steps, "batch_size": config.data.batch_size,
                   "image_size": config.data.image_size, "profiled_steps": steps},
        "per_step_ms": {"data": 1e3 * data / steps, "forward_and_loss": 1e3 * forward / steps,
                        "backward_and_step": 1e3 * backward / steps},
        "one_save_s": save_s,
        "one_validation_s": validate_s,
        "estimated_run_s": parts,
        "estimated_total_s": sum(parts.values()),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps timed (after 3 untimed ones)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="configuration changes")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    profile(3, args.set)  # warm-up: first calls allocate and pick kernels
    result = profile(args.steps, args.set)
    m = result["machine"]
    print(f"default run profile on {m['cpu_model']} ({m['bf16_feature']}), {m['date']}, torch {m['torch']}")
    print(json.dumps({k: result[k] for k in ("config", "per_step_ms", "one_save_s", "one_validation_s")}, indent=1))
    for part, seconds in result["estimated_run_s"].items():
        print(f"{part:<20} {seconds:8.1f} s  {100 * seconds / result['estimated_total_s']:5.1f}%")
    print(f"{'estimated run':<20} {result['estimated_total_s']:8.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
