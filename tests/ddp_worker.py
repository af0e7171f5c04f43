"""Run by test_engine.test_ddp_two_processes_gloo under torchrun: train 2 steps with DDP (gloo, CPU), then save
each rank's weights and compare a distributed evaluation with a single-process one."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from segkit.config import load_config
from segkit.evaluation.evaluate import evaluate
from segkit.inference.pipeline import InferenceSettings, torch_net
from segkit.training.distributed import init_distributed, shutdown_distributed, sync_buffers
from segkit.training.train import batches, build_run, train_one_step

out = Path(sys.argv[1])
info = init_distributed()
cfg = load_config(
    None,
    [
        "task=saliency",
        "data.image_size=64",
        "data.batch_size=2",
        "data.workers=0",
        "model.backbone=res2net50_14w_8s",
        "model.decoder_channels=32",
        "schedule.max_steps=2",
    ],
)
run = build_run(cfg, out, info)
stream = batches(run)
for _ in range(2):
    train_one_step(run, stream)
sync_buffers(run.net, info)
torch.save(run.net.state_dict(), out / f"rank{info.rank}.pt")
settings = InferenceSettings(task="saliency", saliency_size_px=64)
net = torch_net(run.net, "cpu")
reduced = evaluate(net, run.val_source, settings, 1, info.rank, info.world_size, max_images=6)
if info.rank == 0:
    single = evaluate(net, run.val_source, settings, 1, 0, 1, max_images=6)
    (out / "eval_ddp.json").write_text(json.dumps(reduced.scalars()))
    (out / "eval_single.json").write_text(json.dumps(single.scalars()))
dist.barrier()
del run, stream, net  # the DistributedDataParallel wrapper holds the process group
shutdown_distributed()
