"""Run by tests/test_metrics_ddp.py: two gloo processes score saliency (or polyp) maps, rank 1 with no image at
all, reduce across processes, and rank 0 writes the scores; the test compares them with one process scoring all."""

import json
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp


def pairs():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(3):
        gt = np.zeros((30, 40), np.uint8)
        gt[5:20, 8:30] = 255
        out.append((rng.integers(0, 256, gt.shape).astype(np.uint8), gt))
    return out


def metrics(kind: str):
    from segkit.metrics.polyp import PolypMetrics
    from segkit.metrics.saliency import SaliencyMetrics

    return PolypMetrics() if kind == "polyp" else SaliencyMetrics()


KINDS = ("saliency", "polyp")


def worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    for kind in KINDS:
        m = metrics(kind)
        if rank == 0:
            for pred, gt in pairs():
                m.update(pred, gt)
        m.reduce_from_all_processes()
        if rank == 0:
            Path(folder, f"reduced_{kind}.json").write_text(json.dumps(m.compute().scalars()))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    folder = sys.argv[1]
    mp.spawn(worker, args=(folder,), nprocs=2)
    for kind in KINDS:
        single = metrics(kind)
        for pred, gt in pairs():
            single.update(pred, gt)
        Path(folder, f"single_{kind}.json").write_text(json.dumps(single.compute().scalars()))
