"""From an image at its original size to a prediction at that size: resize or pad for the model, optional
test-time augmentation (multi-scale + flip), sliding window for large images, and back.

``Net`` is any callable mapping a normalised float batch (B, 3, H, W) to logits (B, C, H, W): a torch module
or an onnxruntime session wrapper, so PyTorch and ONNX predictions share every step here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segkit.data.normalize import normalize
from segkit.errors import SegkitError
from segkit.tasks import get_task

Net = Callable[[torch.Tensor], torch.Tensor]
TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


# How a one-map network (saliency, camouflage, polyp) sees an image: "square": resized to a square of
# saliency_size_px by bilinear interpolation of the normalised tensor (segkit's own networks); "pil": the 8-bit image
# resized to that square by PIL's bilinear filter, as torchvision's Resize on a PIL image does (PraNet's and
# SINet-V2's test loaders); "native": the image at its own size, as Res2Net-PoolNet's test script runs it.
SALIENCY_RESIZES = ("square", "pil", "native")


@dataclass(frozen=True)
class InferenceSettings:
    task: str  # a name in segkit.tasks.TASKS
    size_multiple: int = 32  # model input sides are padded to a multiple of this (segmentation)
    saliency_size_px: int = 320  # one-map tasks: the side the model sees (square and pil resizes)
    tta: bool = False
    window_px: int = 512  # segmentation: images with a side above this are predicted by sliding window
    device: str = "cpu"
    saliency_resize: str = "square"  # one of SALIENCY_RESIZES
    minmax: bool = False  # one-map tasks: probabilities min-max normalised per image (PraNet's, SINet-V2's tests)
    min_side_px: int = 32  # "native": a smaller image is enlarged until its shorter side has this many pixels


def inference_settings(
    task: str, model: nn.Module, config, tta: bool = False, device: str = "cpu"
) -> InferenceSettings:
    """The settings a model needs, derived in one place from its task, the model (the ``size_multiple`` every
    segkit network carries; a published network's test pipeline: ``test_resize``, ``test_minmax``,
    ``min_side_px``) and the experiment config (``data.eval_size``, else ``data.image_size``, is the side a
    one-map model sees)."""
    return InferenceSettings(
        task=task,
        size_multiple=model.size_multiple,
        saliency_size_px=config.data.eval_size or config.data.image_size,
        tta=tta,
        device=device,
        saliency_resize=getattr(model, "test_resize", "square"),
        minmax=getattr(model, "test_minmax", False),
        min_side_px=getattr(model, "min_side_px", 32),
    )


def pil_square(image: np.ndarray, side: int) -> np.ndarray:
    """An RGB uint8 image resized to ``side`` x ``side`` by PIL's bilinear filter (torchvision's ``Resize`` on a
    PIL image), which the published polyp and camouflage models were tested with."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def torch_net(model: nn.Module, device: str, bf16: bool = False) -> Net:
    """A ``Net`` over a torch model (put in eval mode), with bf16 autocast when ``bf16`` and the device runs it."""
    from segkit.accel.precision import autocast

    model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(torch.device(device), enabled=bf16):
            return model(x.contiguous(memory_format=torch.channels_last))

    return run


def _to_batch(image: np.ndarray, device: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    return normalize(t)  # (1, 3, H, W) float


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


def _run_padded(net: Net, x: torch.Tensor, multiple: int) -> torch.Tensor:
    padded, (h, w) = _pad_to_multiple(x, multiple)
    return net(padded)[..., :h, :w]


LARGE_IMAGE_WINDOWS = 16  # a terminal shows a progress bar over the windows of images needing more than this


def _windows_progress(corners: list, h: int, w: int):
    """The windows, with a progress bar on a terminal when a large image needs many (a 6000x4000 photo: 187)."""
    import sys

    if len(corners) <= LARGE_IMAGE_WINDOWS or not sys.stderr.isatty():
        return corners
    from tqdm import tqdm

    return tqdm(corners, desc=f"{w}x{h} image", unit="window", leave=False)


def _sliding(net: Net, x: torch.Tensor, s: InferenceSettings) -> torch.Tensor:
    """Logits over windows of ``window_px`` with 1/3 overlap, averaged where windows overlap."""
    h, w = x.shape[-2:]
    win = s.window_px
    if max(h, w) <= win:
        return _run_padded(net, x, s.size_multiple)
    stride = win * 2 // 3
    ys = list(range(0, max(h - win, 0) + 1, stride))
    xs = list(range(0, max(w - win, 0) + 1, stride))
    ys = ys + [h - win] if h > win and ys[-1] != h - win else ys
    xs = xs + [w - win] if w > win and xs[-1] != w - win else xs
    total, count = None, torch.zeros((1, 1, h, w), device=x.device)
    corners = [(y0, x0) for y0 in ys for x0 in xs]
    for y0, x0 in _windows_progress(corners, h, w):
        tile = x[..., y0 : y0 + win, x0 : x0 + win]
        out = _run_padded(net, tile, s.size_multiple).float()
        if total is None:
            total = torch.zeros((1, out.shape[1], h, w), device=x.device)
        total[..., y0 : y0 + tile.shape[-2], x0 : x0 + tile.shape[-1]] += out
        count[..., y0 : y0 + tile.shape[-2], x0 : x0 + tile.shape[-1]] += 1
    return total / count


def _rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` resized by ``scale``; a side that would shrink below one pixel stays one pixel (a 1x1 image)."""
    h, w = x.shape[-2:]
    if int(h * scale) >= 1 and int(w * scale) >= 1:
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _resized(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``logits`` resized bilinearly to ``size``; as they are when already that size (bilinear resampling at scale
    1 is the identity, so this skips a full pass, not a change in the numbers)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def segmentation_probs(net: Net, x: torch.Tensor, s: InferenceSettings) -> torch.Tensor:
    """Softmax probabilities (1, C, H, W): padded (or tiled) at each scale, averaged over scales and flips."""
    h, w = x.shape[-2:]
    scales = TTA_SCALES if s.tta else (1.0,)
    total = None
    for scale in scales:
        xs = x if scale == 1.0 else _rescale(x, scale)
        for flip in (False, True) if s.tta else (False,):
            inp = xs.flip(-1) if flip else xs
            logits = _sliding(net, inp, s)
            logits = logits.flip(-1) if flip else logits
            # contiguous first: softmax over the channels of a channels-last map measured 5x slower (9.6 vs 2 ms)
            probs = _resized(logits.float().contiguous(), (h, w)).softmax(1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if s.tta else 1))  # (1, C, H, W)


def _one_map_input(x: torch.Tensor, scale: float, s: InferenceSettings) -> torch.Tensor:
    """What a one-map network sees at ``scale``: at 1 the image as ``s.saliency_resize`` says (a "pil" input is
    resized already); other scales resize that to a square whose side is a multiple of 32 ("native": by the
    scale, keeping the aspect)."""
    if s.saliency_resize == "native":
        shorter = min(x.shape[-2:]) * scale
        grow = max(1.0, s.min_side_px / shorter)
        return x if scale * grow == 1.0 else _rescale(x, scale * grow)
    if s.saliency_resize == "pil" and scale == 1.0:
        return x
    if s.saliency_resize not in SALIENCY_RESIZES:
        raise SegkitError(f"unknown saliency resize '{s.saliency_resize}'; valid: {', '.join(SALIENCY_RESIZES)}")
    side = max(32, int(round(s.saliency_size_px * scale / 32)) * 32)
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def saliency_probs(
    net: Net, x: torch.Tensor, s: InferenceSettings, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Sigmoid probabilities (1, 1, H, W) at ``size`` (default: ``x``'s), averaged over scales and flips, then
    min-max normalised when ``s.minmax``."""
    h, w = size or x.shape[-2:]
    scales = TTA_SCALES if s.tta else (1.0,)
    total = None
    for scale in scales:
        xs = _one_map_input(x, scale, s)
        for flip in (False, True) if s.tta else (False,):
            inp = xs.flip(-1) if flip else xs
            logits = net(inp).float()
            logits = logits.flip(-1) if flip else logits
            probs = _resized(logits, (h, w)).sigmoid()
            total = probs if total is None else total + probs
    probs = total / (len(scales) * (2 if s.tta else 1))  # (1, 1, H, W)
    if s.minmax:  # the authors' (p - min) / (max - min + 1e-8)
        probs = (probs - probs.min()) / (probs.max() - probs.min() + 1e-8)
    return probs


def network_input(image: np.ndarray, s: InferenceSettings) -> torch.Tensor:
    """What the network sees of an RGB uint8 image in one pass without test-time augmentation: a one-map
    network's input at scale 1, a segmentation network's padded image (its first window when the image is
    larger than ``window_px``)."""
    seen = pil_square(image, s.saliency_size_px) if s.saliency_resize == "pil" else image
    x = _to_batch(seen, s.device)
    if get_task(s.task).labels:
        return _pad_to_multiple(x[..., : s.window_px, : s.window_px], s.size_multiple)[0]
    return _one_map_input(x, 1.0, s)


@torch.inference_mode()
def predict_probs(net: Net, image: np.ndarray, s: InferenceSettings) -> np.ndarray:
    """Probabilities at the image's size: (H, W) for a one-map task, (C, H, W) for segmentation (the task's
    form)."""
    seen = pil_square(image, s.saliency_size_px) if s.saliency_resize == "pil" else image
    x = _to_batch(seen, s.device)
    if get_task(s.task).labels:  # class logits
        probs = segmentation_probs(net, x, s)[0]  # (C, H, W)
    else:  # one map; x may be resized already (the "pil" resize), so the image's own size is given
        probs = saliency_probs(net, x, s, image.shape[:2])[0, 0]  # (H, W)
    return probs.float().cpu().numpy()
