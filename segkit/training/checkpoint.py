"""Writing checkpoints: atomically (a crash leaves the old file or the new one), with the random states a
resume restores. Reading them is ``segkit.inference.checkpoint`` (prediction needs no training code)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1


def atomic_save(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, flush and fsync it, then rename over ``path``: a crash at any
    moment leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed or interrupted write leaves nothing behind
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_tensor(),
        "python": list(_flatten_python_state(random.getstate())),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, *internal, gauss = state["python"]
    random.setstate((version, tuple(internal), None if gauss == "none" else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_tensor():
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]


def _flatten_python_state(state):
    version, internal, gauss = state
    return [version, *internal, "none" if gauss is None else gauss]
