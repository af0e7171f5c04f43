"""Turning metric inputs (numpy arrays or torch tensors on any device) into 2-D numpy maps."""

from __future__ import annotations

import numpy as np


def as_2d_numpy(x) -> np.ndarray:
    """(H, W) numpy from a numpy array or a torch tensor (CPU or CUDA), (H, W) or (1, H, W)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {x.shape}")
    return x
