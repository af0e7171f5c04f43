"""segkit's built-in dataset: generated, deterministic from a seed, small enough to train on a laptop CPU.

Objects are cut from the colour photographs scikit-image ships (photographic texture) in irregular outlines with
thin limbs, so that boundary quality matters; backgrounds are tinted grey-level textures (brick, grass, gravel,
moon, text, ...) mixed together and cluttered with distractor shapes of the same family. For segmentation each
object class has its own photograph, and a thin 255 ("void") band runs along object borders as in VOC.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segkit.conventions import IGNORE_INDEX

SEGMENTATION_CLASSES = ("background", "astronaut", "coffee", "cat", "rocket")
_CLASS_PHOTOS = {1: "astronaut", 2: "coffee", 3: "chelsea", 4: "rocket"}
_SALIENT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
_BACKGROUND_TEXTURES = ("brick", "grass", "gravel", "moon", "camera", "page", "text", "coins", "clock")
VOID_BAND_PX = 3  # width of the 255 band along object borders (segmentation)
_SPLITS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class BuiltinSpec:
    """Size and seed of the built-in dataset."""

    image_size_px: int = 128  # square images
    train_count: int = 480
    val_count: int = 64
    seed: int = 0

    def count(self, split: str) -> int:
        if split == "train":
            return self.train_count
        elif split == "val":
            return self.val_count
        else:
            raise ValueError(f"built-in dataset splits are 'train' and 'val', got '{split}'")


@functools.cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def _crop(rng: np.random.Generator, img: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of ``img`` at a random scale, resized to ``size``."""
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 0.9) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)


def _tinted_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    gray = _crop(rng, _photo(str(rng.choice(_BACKGROUND_TEXTURES))), size)[..., 0].astype(np.float32)
    tint = rng.uniform(0.6, 1.0, size=3) * rng.uniform(0.7, 1.1)
    return np.clip(gray[..., None] * tint, 0, 255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two tinted textures blended by a smooth random mask, plus distractor shapes."""
    a, b = _tinted_texture(rng, size), _tinted_texture(rng, size)
    blend = cv2.resize(rng.random((4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = a * np.clip(blend, 0, 1)[..., None] + b * (1 - np.clip(blend, 0, 1)[..., None])
    clutter = _tinted_texture(rng, size)
    for _ in range(rng.integers(2, 6)):
        shape = _shape_mask(rng, size, scale=rng.uniform(0.06, 0.18), limbs=0) > 0
        img[shape] = clutter[shape]
    return img


def _shape_mask(rng: np.random.Generator, size: int, scale: float, limbs: int) -> np.ndarray:
    """An irregular blob (radius with random harmonics) with ``limbs`` thin straight parts, as uint8 0/1."""
    cy, cx = rng.uniform(0.25, 0.75, size=2) * size
    radius = scale * size
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, 0.35 / k * 2) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    pts = np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    for _ in range(limbs):
        angle = rng.uniform(0, 2 * np.pi)
        length = radius * rng.uniform(1.5, 2.4)
        end = (int(cx + length * np.cos(angle)), int(cy + length * np.sin(angle)))
        cv2.line(mask, (int(cx), int(cy)), end, 1, thickness=int(rng.integers(2, 4)))
    return mask


def _compose(rng: np.random.Generator, size: int, max_objects: int, photo_for) -> tuple[np.ndarray, np.ndarray]:
    """A background with 1..``max_objects`` objects cut from photographs: (RGB uint8, class ids uint8).

    ``photo_for(rng, class_id)`` names the photograph an object is cut from."""
    img = _background(rng, size)
    labels = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, max_objects + 1)):
        shape = _shape_mask(rng, size, scale=rng.uniform(0.14, 0.26), limbs=int(rng.integers(0, 4)))
        cls = int(rng.integers(1, len(SEGMENTATION_CLASSES)))
        texture = _crop(rng, _photo(photo_for(rng, cls)), size).astype(np.float32)
        img[shape > 0] = texture[shape > 0]
        labels[shape > 0] = cls
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8), labels


def saliency_sample(split: str, index: int, spec: BuiltinSpec = BuiltinSpec()) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image uint8 (S, S, 3), 0/255 mask uint8 (S, S)) of one built-in saliency sample; deterministic."""
    rng = np.random.default_rng([spec.seed, _SPLITS[split], index, 0])
    img, labels = _compose(rng, spec.image_size_px, 2, lambda r, _: str(r.choice(_SALIENT_PHOTOS)))
    return img, np.where(labels > 0, 255, 0).astype(np.uint8)


def segmentation_sample(split: str, index: int, spec: BuiltinSpec = BuiltinSpec()) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image uint8 (S, S, 3), class ids uint8 (S, S)) of one built-in segmentation sample; deterministic.

    Class ids follow ``SEGMENTATION_CLASSES``; ``IGNORE_INDEX`` marks a thin band along object borders."""
    rng = np.random.default_rng([spec.seed, _SPLITS[split], index, 1])
    img, labels = _compose(rng, spec.image_size_px, 3, lambda _, cls: _CLASS_PHOTOS[cls])
    return img, _with_void_band(labels)


def _with_void_band(labels: np.ndarray) -> np.ndarray:
    from segkit.metrics.boundary import label_boundaries

    edges = label_boundaries(labels).astype(np.uint8)
    band = cv2.dilate(edges, np.ones((VOID_BAND_PX - 1, VOID_BAND_PX - 1), np.uint8)) > 0
    out = labels.copy()
    out[band] = IGNORE_INDEX
    return out


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])


def make_saliency_demo(out: Path | str, spec: BuiltinSpec = BuiltinSpec()) -> Path:
    """Write the built-in saliency dataset to disk in the DUTS layout (DUTS-TR train, DUTS-TE val)."""
    folders = {split: (f"{name}/{name}-Image", f"{name}/{name}-Mask") for split, name in
               (("train", "DUTS-TR"), ("val", "DUTS-TE"))}  # fmt: skip
    return make_binary_demo(out, saliency_sample, folders, spec)


def make_segmentation_demo(out: Path | str, spec: BuiltinSpec = BuiltinSpec()) -> Path:
    """Write the built-in segmentation dataset to disk in the VOC layout (train and val split files)."""
    from segkit.data.voc import MASK_DIR, save_label_png

    out = Path(out)
    voc = out / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", MASK_DIR, "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        ids = [f"{split}_{i:05d}" for i in range(spec.count(split))]
        for i, image_id in enumerate(ids):
            img, labels = segmentation_sample(split, i, spec)
            _write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", img)
            save_label_png(voc / MASK_DIR / f"{image_id}.png", labels)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return out


def camouflage_sample(split: str, index: int, spec: BuiltinSpec = BuiltinSpec()) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, 0/255 mask uint8) of one built-in camouflage sample: an object cut from the same texture as
    the background around it (another crop of it, slightly shifted in tint and scale), so only a faint seam, a
    change of grain and a soft shadow give it away; deterministic."""
    rng = np.random.default_rng([spec.seed, _SPLITS[split], index, 2])
    size = spec.image_size_px
    texture = str(rng.choice(_BACKGROUND_TEXTURES))
    tint = rng.uniform(0.6, 1.0, size=3)
    background = _crop(rng, _photo(texture), size)[..., 0].astype(np.float32)[..., None] * tint
    skin = _crop(rng, _photo(texture), size)[..., 0].astype(np.float32)[..., None] * tint * rng.uniform(0.85, 1.15)
    shape = _shape_mask(rng, size, scale=rng.uniform(0.16, 0.28), limbs=int(rng.integers(0, 3))) > 0
    shadow = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), size / 40) * rng.uniform(0.05, 0.15)
    img = background * (1 - shadow[..., None])
    img[shape] = skin[shape]
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, np.where(shape, 255, 0).astype(np.uint8)


def polyp_sample(split: str, index: int, spec: BuiltinSpec = BuiltinSpec()) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, 0/255 mask uint8) of one built-in polyp sample: one or two smooth, shaded blobs (a raised,
    slightly redder surface with a specular highlight) on a pink-red textured mucosa under vignetted light, as a
    colonoscopy frame looks; deterministic."""
    rng = np.random.default_rng([spec.seed, _SPLITS[split], index, 3])
    size = spec.image_size_px
    grain = _crop(rng, _photo(str(rng.choice(("grass", "gravel", "moon", "brick")))), size)[..., 0] / 255.0
    base = np.array([rng.uniform(170, 220), rng.uniform(70, 110), rng.uniform(60, 90)], np.float32)
    img = base * (0.75 + 0.35 * grain[..., None].astype(np.float32))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    img *= (1 - 0.9 * (xx**2 + yy**2))[..., None]  # the endoscope's light falls off to the corners
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 3)):
        shape = _shape_mask(rng, size, scale=rng.uniform(0.1, 0.22), limbs=0) > 0
        dome = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), size / 25)
        colour = base * np.array([rng.uniform(0.95, 1.1), rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9)], np.float32)
        img = np.where(shape[..., None], colour * (0.7 + 0.5 * dome[..., None]), img)
        mask |= shape
    highlight = cv2.GaussianBlur((rng.random((size, size)) > 0.9998).astype(np.float32), (0, 0), 1.5) * 4000
    img = np.clip(img + highlight[..., None] + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, np.where(mask, 255, 0).astype(np.uint8)


def make_binary_demo(
    out: Path | str, sample, folders: dict[str, tuple[str, str]], spec: BuiltinSpec = BuiltinSpec()
) -> Path:
    """Write a built-in binary-map dataset in its community's layout: ``folders[split]`` is the (image, mask)
    folder pair under ``out`` of the "train" and "val" splits; ``sample(split, index, spec)`` makes one pair."""
    out = Path(out)
    for split, (image_dir, mask_dir) in folders.items():
        img_dir, msk_dir = out / image_dir, out / mask_dir
        img_dir.mkdir(parents=True, exist_ok=True)
        msk_dir.mkdir(parents=True, exist_ok=True)
        for i in range(spec.count(split)):
            img, mask = sample(split, i, spec)
            _write_jpeg(img_dir / f"{split}_{i:05d}.jpg", img)
            cv2.imwrite(str(msk_dir / f"{split}_{i:05d}.png"), mask)
    return out
