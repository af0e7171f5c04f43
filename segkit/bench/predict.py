"""``segkit bench predict``: the whole ``segkit predict`` command against the plain loop a user would write.

Both run as whole processes over the same N JPEGs (500x375, VOC's most common size, by default; with
``mixed_sizes`` a seeded draw from ``MIXED_SIZES``, since the fast path keeps per-shape state) with the same
DeepLabv3+ Res2Net-50 weights, and both write one PNG mask per image:

- segkit: ``segkit predict --checkpoint CKPT --input DIR --output OUT`` with its defaults (or the flags given);
- plain: timm + segmentation-models-pytorch as their READMEs show them: ``smp.DeepLabV3Plus`` with timm's
  Res2Net (``tu-res2net50_26w_4s``) holding the same weights, fp32, eager, ``torch.no_grad``, one image at a
  time: OpenCV decode, normalise, pad to a multiple of 16, forward, argmax, crop, write.

It reports images/s of both, the speed-up, and how many mask pixels agree (so both computed the same thing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from segkit.bench.backbone import machine_info, randomize_batchnorm
from segkit.errors import SegkitError

BACKBONE = "res2net50_26w_4s"
NUM_CLASSES = 21

# What a user writes with timm + smp: one image at a time, fp32, eager.
PLAIN_LOOP = r"""
import json, sys
from pathlib import Path
import cv2, numpy as np, torch, segmentation_models_pytorch as smp
images, out, weights = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
model = smp.DeepLabV3Plus(encoder_name="tu-res2net50_26w_4s", encoder_weights=None, encoder_output_stride=16,
                          decoder_atrous_rates=(6, 12, 18), classes=21)
model.load_state_dict(torch.load(weights, weights_only=True))
model.eval()
mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
std = np.array([0.229, 0.224, 0.225], np.float32) * 255
out.mkdir(parents=True, exist_ok=True)
with torch.no_grad():
    for path in sorted(images.glob("*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1).copy())[None]
        x = torch.nn.functional.pad(x, (0, (-w) % 16, 0, (-h) % 16))
        mask = model(x)[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)
        cv2.imwrite(str(out / (path.stem + ".png")), mask)
"""


# (width, height): weight. A mix in the manner of a photo collection such as VOC: the long side 500, landscape
# mostly 4:3 and 3:2, some portrait and square; 16 sizes, 15 distinct shapes once padded to a multiple of 16. Not
# VOC's own distribution (no dataset here), but the same kind of variety.
MIXED_SIZES: dict[tuple[int, int], float] = {
    (500, 375): 0.30, (375, 500): 0.12, (500, 333): 0.12, (333, 500): 0.06, (500, 500): 0.05, (500, 400): 0.04,
    (500, 366): 0.04, (500, 281): 0.04, (500, 354): 0.03, (500, 338): 0.03, (500, 442): 0.03, (500, 464): 0.02,
    (480, 360): 0.03, (500, 300): 0.03, (400, 500): 0.02, (353, 500): 0.02,
}  # fmt: skip


def image_sizes(count: int, mixed: bool, seed: int = 0) -> list[tuple[int, int]]:
    """(width, height) of each of ``count`` images: all 500x375, or a seeded draw from ``MIXED_SIZES``."""
    if not mixed:
        return [(500, 375)] * count
    rng = np.random.default_rng(seed)
    sizes = list(MIXED_SIZES)
    weights = np.array(list(MIXED_SIZES.values()))
    return [sizes[i] for i in rng.choice(len(sizes), size=count, p=weights / weights.sum())]


def make_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """Synthetic photos (smooth colour fields with shapes and noise) of these (width, height) as JPEGs in
    ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (width, height) in enumerate(sizes):
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack([np.sin(xx / rng.uniform(20, 90) + c) * 60 + 120 for c in rng.uniform(0, 6, 3)], -1)
        img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(20, width // 3)), int(rng.integers(20, height // 3)))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def write_models(folder: Path) -> tuple[Path, Path]:
    """A segkit checkpoint of DeepLabv3+ Res2Net-50 (random weights, BatchNorm statistics randomised) and the
    same weights under smp's names for ``tu-res2net50_26w_4s``."""
    from segkit.config import load_config, to_dict
    from segkit.models import create_model
    from segkit.training.checkpoint import FORMAT_VERSION, atomic_save

    torch.manual_seed(0)
    config = load_config(None, ["task=segmentation", f"model.backbone={BACKBONE}", "model.output_stride=16"])
    model = create_model("segmentation", backbone=BACKBONE, num_classes=NUM_CLASSES, output_stride=16).eval()
    randomize_batchnorm(model)
    state = model.state_dict()
    ckpt = folder / "segkit.pt"
    atomic_save(
        {
            "format": FORMAT_VERSION,
            "model": state,
            "config": to_dict(config),
            "task": "segmentation",
            "num_classes": NUM_CLASSES,
            "class_names": [f"class{i}" for i in range(NUM_CLASSES)],
            "step": 0,
        },
        ckpt,
    )
    smp_state = {}
    for key, value in state.items():
        name = key.removeprefix("net.")
        smp_state[name.replace("encoder.backbone.", "encoder.model.", 1)] = value
    plain = folder / "smp_timm.pt"
    torch.save(smp_state, plain)
    return ckpt, plain


def _run(cmd: list[str], what: str) -> tuple[float, str]:
    """(seconds, what the process wrote to stderr) of a whole process that must succeed."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SegkitError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return seconds, done.stderr


def _said_of(checkpoint: Path, stderr: str) -> str:
    """What segkit predict said of the checkpoint it loaded (the engine, precision and why), or ''."""
    prefix = f"{checkpoint.name}: "
    return next((line.removeprefix(prefix) for line in stderr.splitlines() if line.startswith(prefix)), "")


def agreement(a: Path, b: Path) -> float:
    """Fraction of mask pixels with the same class in the two folders (PNG by stem)."""
    same = total = 0
    for pa in sorted(a.glob("*.png")):
        ma, mb = np.array(Image.open(pa)), np.array(Image.open(b / pa.name))
        same += int((ma == mb).sum())
        total += ma.size
    return same / total if total else 0.0


def run_predict_bench(
    count: int, segkit_flags: list[str], images: Path | None = None, mixed_sizes: bool = False
) -> dict:
    with tempfile.TemporaryDirectory(prefix="segkit-bench-predict-") as tmp:
        root = Path(tmp)
        folder = images or make_images(root / "images", image_sizes(count, mixed_sizes))
        n = len(list(folder.glob("*.jpg")))
        if n == 0:
            raise SegkitError(f"no .jpg images in '{folder}'")
        ckpt, plain_weights = write_models(root)
        script = root / "plain_loop.py"
        script.write_text(PLAIN_LOOP)
        plain_s = _run([sys.executable, str(script), str(folder), str(root / "plain"), str(plain_weights)], "plain")[0]
        cmd = [sys.executable, "-m", "segkit", "predict", "--checkpoint", str(ckpt), "--input", str(folder)]
        segkit_s, said = _run([*cmd, "--output", str(root / "segkit"), *segkit_flags], "segkit predict")
        same = agreement(root / "plain", root / "segkit")
    return {
        "machine": machine_info(torch.device("cpu")),
        "images": n,
        "image_size": "as given" if images else "mixed: MIXED_SIZES" if mixed_sizes else "500x375",
        "segkit_flags": " ".join(segkit_flags) or "(defaults)",
        "segkit_ran": _said_of(ckpt, said),  # its own line: engine, precision and why
        "plain_s": plain_s,
        "segkit_s": segkit_s,
        "plain_img_s": n / plain_s,
        "segkit_img_s": n / segkit_s,
        "speedup": plain_s / segkit_s,
        "pixels_agreeing": same,
    }


def format_predict(result: dict) -> str:
    m = result["machine"]
    return "\n".join(
        [
            f"segkit bench predict on {m['cpu_model']} ({m['bf16_feature']}), {m['date']}, torch {m['torch']}, "
            f"{m['threads']} threads",
            f"{result['images']} images ({result['image_size']}), DeepLabv3+ Res2Net-50 26w_4s, whole processes",
            f"plain timm + smp loop (fp32 eager)   {result['plain_s']:8.1f} s  {result['plain_img_s']:6.2f} img/s",
            f"segkit predict {result['segkit_flags']:<21} {result['segkit_s']:8.1f} s  "
            f"{result['segkit_img_s']:6.2f} img/s",
            f"speed-up {result['speedup']:.2f}x; mask pixels agreeing: {100 * result['pixels_agreeing']:.3f}%",
            f"segkit predict ran: {result['segkit_ran'] or '(it did not say)'}",
        ]
    )


def write_predict_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2))
