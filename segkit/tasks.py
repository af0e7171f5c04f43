"""What differs between segkit's tasks, in one place: one small class per task and one name -> task table.

Training, evaluation, prediction, export, the renderer, the dataset checker and the command line ask the task
(``get_task(name)``) and never compare task names. A task says:

- its data: how a ground-truth mask is read and checked, where its datasets live (``source``), the built-in
  generated samples, the training augmentation and the loss's target tensor;
- its network: which one is built (``build_network``) and the input-size multiple inference pads to;
- its predictions: probabilities -> saved mask, how a mask file is written, how a mask is drawn;
- its scores: the metrics accumulator, the reported keys, the primary metric (which picks ``best.pt``), the loss
  of ``loss: auto`` and the default configuration of ``segkit train``.

Adding a task (for example camouflaged object detection, which is saliency on other datasets) is one subclass
and one entry in ``TASKS``. Heavy modules (torch, OpenCV, the networks) are imported inside the methods, so that
``import segkit.tasks`` stays cheap for the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from segkit.errors import SegkitError, unknown_name

if TYPE_CHECKING:
    import torch
    from torch import nn

    from segkit.data.builtin import BuiltinSpec
    from segkit.data.check import CheckReport
    from segkit.data.datasets import FileSource, SampleSource
    from segkit.engine.inference import InferenceSettings, Net


class Task:
    """The interface every task fills in; shared behaviour lives here."""

    name: ClassVar[str]
    primary_metric: ClassVar[str]  # the score that picks best.pt (higher is better)
    metric_keys: ClassVar[tuple[str, ...]]  # the scores reported in tables, in order
    default_loss: ClassVar[str]  # the loss of `loss: auto` (a name in segkit.engine.losses.LOSSES)
    default_config: ClassVar[str]  # file name among the packaged configs (segkit/configs)
    labels: ClassVar[bool]  # masks hold class ids (True) or grey levels (False)

    # ---------------------------------------------------------------- data

    def read_mask(self, path: Path | str) -> np.ndarray:
        raise NotImplementedError

    mask_readings: ClassVar[tuple[str, ...]] = ("standard",)  # names from segkit.data.masks.MASK_READINGS

    def mask_problem(self, mask: np.ndarray, num_classes: int) -> str | None:
        """What is wrong with a ground-truth mask's values, or None."""
        return None

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        """A value pattern that reads without error but silently changes the mask's meaning, or None (``path``,
        when known, lets the file's format be asked too)."""
        return None

    def mask_checks(self, reading: str = "standard"):
        """The check a training source applies to each mask: problems always, surprises unless the user chose
        how to read the values (``data.mask_values``)."""
        return _MaskCheck(self.name, reading)

    def resize_mask(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A mask brought to ``shape`` (H, W): nearest for class ids, bilinear for grey levels."""
        from segkit.conventions import resize_mask

        return resize_mask(mask, shape, labels=self.labels)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def builtin_classes(self) -> tuple[str, ...]:
        raise NotImplementedError

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        """Write the built-in dataset to disk in this task's standard layout."""
        raise NotImplementedError

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """``split`` ("train" or "val") of the dataset in its standard layout under ``root``."""
        raise NotImplementedError

    def check_dataset(self, root: Path | str) -> CheckReport:
        """Read every file of the dataset under ``root`` and report problems (``segkit data check``)."""
        raise NotImplementedError

    def train_transform(self, size_px: int):
        """The albumentations training pipeline."""
        raise NotImplementedError

    def target(self, mask: np.ndarray) -> torch.Tensor:
        """An augmented mask as the loss's target tensor."""
        raise NotImplementedError

    def source(self, root: Path | str | None, split: str, reading: str = "standard") -> SampleSource:
        """The samples of ``split``: the built-in data when ``root`` is None, else the dataset under ``root``
        with its mask values read as ``reading`` says (``data.mask_values``)."""
        if root is None:
            from segkit.data.builtin import BuiltinSpec
            from segkit.data.datasets import BuiltinSource

            return BuiltinSource(self.builtin_sample, split, self.builtin_classes(), BuiltinSpec())
        return self.dataset_source(root, split, reading)

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        """Class names of a plain image/mask folder pair (no dataset to name them)."""
        raise NotImplementedError

    def file_source(
        self, pairs: list[tuple[Path, Path]], where: str, classes: tuple[str, ...], reading: str = "standard"
    ) -> FileSource:
        """Image/mask file pairs read with this task's reader (values read as ``reading``) and checks."""
        from segkit.data.datasets import FileSource
        from segkit.data.masks import MaskReader

        if reading not in self.mask_readings:
            raise SegkitError(
                f"config key 'data.mask_values' is '{reading}', which {self.name} does not read; "
                f"valid: {', '.join(self.mask_readings)}"
            )
        if not pairs:
            raise SegkitError(f"no image/mask pairs found in {where}")
        return FileSource(pairs, MaskReader(self.read_mask, reading), classes, self.mask_checks(reading))

    # ---------------------------------------------------------------- network

    def build_network(
        self,
        backbone: str,
        num_classes: int,
        output_stride: int | None,
        pretrained_backbone: str | Path | None,
        decoder_channels: int | None,
        arch: str | None = None,
    ) -> nn.Module:
        """The task's network; ``arch`` None is the task's default architecture. The network carries
        ``size_multiple``: the engine pads (or resizes) input sides to a multiple of it."""
        raise NotImplementedError

    def validate_config(self, config) -> None:
        """Task-specific checks of an ``ExperimentConfig``, each naming its key."""

    # ---------------------------------------------------------------- predictions

    def network_probs(
        self, net: Net, x: torch.Tensor, settings: InferenceSettings, size: tuple[int, int]
    ) -> torch.Tensor:
        """Probabilities of a normalised (1, 3, h, w) image at the image's ``size`` (H, W): (H, W) for a one-map
        task, else (C, H, W). ``x`` is the image itself, or already resized for the network (the "pil" resize)."""
        raise NotImplementedError

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities at the image's size -> the saved mask (uint8)."""
        raise NotImplementedError

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """(H, W) probability map written by ``predict --probs``."""
        raise NotImplementedError

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        raise NotImplementedError

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        """bool (H, W): the pixels a mask marks as object (for boundaries and overlays)."""
        raise NotImplementedError

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(false positives, false negatives) of a saved prediction against its ground truth."""
        raise NotImplementedError

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        """What two methods' masks are compared on: the binary decision or the class id."""
        raise NotImplementedError

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        """A mask as an RGB uint8 image."""
        raise NotImplementedError

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The mask blended over the RGB image."""
        raise NotImplementedError

    # ---------------------------------------------------------------- scores

    def metrics(self, num_classes: int, **options):
        """A fresh metrics accumulator (``update``, ``merge``, ``compute``, ``reduce_from_all_processes``)."""
        raise NotImplementedError

    caption_keys: ClassVar[dict[str, str]]  # label printed under a comparison panel -> score key
    # ``segkit eval --data ROOT`` scores every test set under ROOT (methods x datasets, as saliency papers do)
    scores_test_sets: ClassVar[bool] = False
    image_metric_options: ClassVar[dict] = {}  # options of ``metrics`` for one image's scores

    def image_scores(self, pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, float]:
        """Every scalar score of one image (``metric_keys``), as ``segkit eval`` would give for it alone."""
        m = self.metrics(num_classes, **self.image_metric_options)
        m.update(pred, gt)
        return m.compute().scalars()

    def truth(self, gt: np.ndarray):
        """A ground truth as ``metrics().update`` takes it, prepared once for every method scored against it."""
        return gt

    def metric_conventions(self, num_classes: int) -> dict[str, str]:
        """The conventions of this task's scores, for the metric card (``segkit.metrics.card``)."""
        raise NotImplementedError

    def caption_scores(self, pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, float]:
        """The per-image scores a comparison figure prints under a panel (``caption_keys``)."""
        scores = self.image_scores(pred, gt, num_classes)
        return {label: scores[key] for label, key in self.caption_keys.items()}

    def details_table(self, scores, class_names: tuple[str, ...]) -> str | None:
        """A table printed under the scores by ``segkit eval --checkpoint`` (per class), or None."""
        return None

    def summary(self, scores) -> str:
        """One line of the headline scores, for the end of a training run."""
        return f"{self.primary_metric} {getattr(scores, self.primary_metric):.4f}"

    def __repr__(self) -> str:
        return f"<task {self.name}>"


# One-map networks by ``model.arch``: segkit's own PoolNet-style design ("poolnet-style"; "poolnet", its earlier
# name, still read), and the published networks computing what their authors' code computes
# (segkit.models.published).
ONE_MAP_ARCHS = ("poolnet-style", "poolnet", "poolnet-res2net", "pranet", "sinet-v2")


def one_map_network(arch: str, backbone, output_stride, pretrained_backbone, decoder_channels) -> nn.Module:
    """The one-map network ``arch`` (a name in ``ONE_MAP_ARCHS``) on ``backbone``."""
    if arch in ("poolnet-style", "poolnet"):
        from segkit.models.poolnet import PoolNet

        return PoolNet(backbone, decoder_channels or 128, output_stride or 32, pretrained_backbone)
    if output_stride not in (None, 16 if arch == "poolnet-res2net" else 32):
        raise SegkitError(f"config key 'model.output_stride': {arch} has a fixed output stride; leave it unset")
    if arch == "poolnet-res2net":
        from segkit.models.poolnet_res2net import PoolNetRes2Net

        return PoolNetRes2Net(backbone, pretrained_backbone)
    if arch == "pranet":
        from segkit.models.pranet import PraNet

        return PraNet(backbone, decoder_channels or 32, pretrained_backbone)
    if arch == "sinet-v2":
        from segkit.models.sinet_v2 import SINetV2

        return SINetV2(backbone, decoder_channels or 32, pretrained_backbone)
    raise not_one_map(arch)


def not_one_map(arch: str) -> SegkitError:
    return SegkitError(
        f"config key 'model.arch': '{arch}' is not a one-map network; valid: poolnet-style (segkit's own "
        "PoolNet-style design), poolnet-res2net (the Res2Net paper's PoolNet), pranet, sinet-v2 (smp's "
        "architectures are for --task segmentation)"
    )


class SaliencyTask(Task):
    """Salient object detection: grey-level masks (object > 128), a PoolNet-style network, the SOD metrics."""

    name = "saliency"
    primary_metric = "max_fm"
    metric_keys = ("mae", "sm", "wfm", "adp_fm", "mean_fm", "max_fm", "adp_em", "mean_em", "max_em", "boundary_iou")
    table_metrics: ClassVar[tuple[str, ...]] = ("max_fm", "mae", "sm", "mean_em")  # eval --data's default columns
    caption_keys = {"MAE": "mae", "maxF": "max_fm"}
    scores_test_sets = True
    default_arch: ClassVar[str] = "poolnet-style"

    @property
    def datasets(self):
        """The community's datasets: layouts, training sets, the papers' test-set order."""
        from segkit.data.saliency import SOD

        return SOD

    def truth(self, gt: np.ndarray):
        from segkit.metrics.saliency import SaliencyTruth

        return SaliencyTruth(gt)  # the weighted F-measure's transforms, computed once

    def metric_conventions(self, num_classes: int) -> dict[str, str]:
        from segkit.metrics.card import saliency_conventions

        return saliency_conventions()

    default_loss = "bce_iou"
    default_config = "demo_saliency.yaml"
    labels = False
    mask_readings = ("standard", "nonzero")

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        from segkit.data.masks import palette_read_as_grey, zero_one

        fix = "Read every non-zero value as object with --set data.mask_values=nonzero"
        if zero_one(mask):
            return f"holds only 0 and 1 (a 0/1 mask): binarised as the benchmarks do (> 128) its object is empty. {fix}"
        if palette_read_as_grey(mask, path):
            return (
                "is a palette PNG whose colours read as grey levels of 128 or less: binarised as the benchmarks do "
                f"(> 128) its object is empty. {fix}"
            )
        return None

    def read_mask(self, path: Path | str) -> np.ndarray:
        from segkit.data.io import read_gray

        return read_gray(path)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import saliency_sample

        return saliency_sample(split, index, spec)

    def builtin_classes(self) -> tuple[str, ...]:
        return ("object",)

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        return ("object",)

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        from segkit.data.builtin import BuiltinSpec, make_saliency_demo

        return make_saliency_demo(out, spec or BuiltinSpec())

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """The family's training set(s) (train; DUTS-TR for saliency) or its validation test set (val; DUTS-TE)
        under ``root``."""
        from segkit.data.saliency import find_source, pair_files, training_sources

        family = self.datasets
        found = training_sources(root, family) if split == "train" else [find_source(root, family.val, family)]
        pairs = [pair for source in found for pair in pair_files(source.image_dir, source.mask_dir).pairs]
        where = " + ".join(str(source.image_dir) for source in found)
        return self.file_source(pairs, where, self.builtin_classes(), reading)

    def check_dataset(self, root: Path | str) -> CheckReport:
        from segkit.data.check import check_root, check_saliency

        return check_saliency(check_root(root), self.mask_checks(), self.datasets)

    def train_transform(self, size_px: int):
        from segkit.data.transforms import saliency_train

        return saliency_train(size_px)

    def target(self, mask: np.ndarray) -> torch.Tensor:
        from segkit.data.transforms import grey_target

        return grey_target(mask)

    def build_network(self, backbone, num_classes, output_stride, pretrained_backbone, decoder_channels, arch=None):
        arch = arch or self.default_arch
        return one_map_network(arch, backbone, output_stride, pretrained_backbone, decoder_channels)

    def validate_config(self, config) -> None:
        arch = config.model.arch or self.default_arch
        if arch not in ONE_MAP_ARCHS:
            raise not_one_map(arch)
        size = config.data.image_size
        if arch in ("pranet", "sinet-v2") and size % 32:
            raise SegkitError(f"config key 'data.image_size' must be a multiple of 32 for {arch}, got {size}")
        if arch == "poolnet-res2net" and size < 128:
            raise SegkitError(f"config key 'data.image_size' must be at least 128 for poolnet-res2net, got {size}")

    def network_probs(self, net: Net, x: torch.Tensor, settings: InferenceSettings, size) -> torch.Tensor:
        from segkit.engine.inference import saliency_probs

        return saliency_probs(net, x, settings, size)[0, 0]  # (H, W)

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        from segkit.conventions import probs_to_uint8

        return probs_to_uint8(probs)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        return probs

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        from segkit.data.io import write_png

        write_png(path, mask)

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        return mask >= 128  # probability >= 0.5

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        return self.foreground(mask)

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, g = pred >= 128, gt > 128  # prediction at 0.5; ground truth as the metrics binarise it
        return p & ~g, ~p & g

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        return np.repeat(mask[..., None], 3, axis=2)

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        colour = np.zeros_like(image)
        colour[..., 0] = 255  # red, weighted by the saliency
        weight = (mask.astype(np.float32) / 255 * alpha)[..., None]
        return (image * (1 - weight) + colour * weight).astype(np.uint8)

    def metrics(self, num_classes: int = 1, **options):
        from segkit.metrics.saliency import SaliencyMetrics

        return SaliencyMetrics(**options)

    def summary(self, scores) -> str:
        return f"{super().summary(scores)}, MAE {scores.mae:.4f}"


class CamouflageTask(SaliencyTask):
    """Camouflaged object detection (COD): binary masks, SINet-V2 by default, the COD datasets and SINet-V2's
    table columns (S-measure, mean E-measure, weighted F, MAE)."""

    name = "camouflage"
    primary_metric = "sm"
    table_metrics = ("sm", "mean_em", "wfm", "mae")
    caption_keys = {"S": "sm", "MAE": "mae"}
    default_arch = "sinet-v2"
    default_loss = "structure"
    default_config = "demo_camouflage.yaml"

    @property
    def datasets(self):
        from segkit.data.saliency import COD

        return COD

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import camouflage_sample

        return camouflage_sample(split, index, spec)

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        """SINet-V2's layout: ``TrainDataset/Imgs|GT`` (train) and ``TestDataset/CAMO/Imgs|GT`` (val)."""
        from segkit.data.builtin import BuiltinSpec, camouflage_sample, make_binary_demo

        return make_binary_demo(out, camouflage_sample, "TrainDataset", "TestDataset/CAMO", "Imgs", "GT",
                                spec or BuiltinSpec())  # fmt: skip

    def metric_conventions(self, num_classes: int) -> dict[str, str]:
        from segkit.metrics.card import saliency_conventions

        return {**saliency_conventions(), "table": "SINet-V2's columns: S-measure, mean E-measure, weighted F, MAE"}


class PolypTask(SaliencyTask):
    """Polyp segmentation: binary masks, PraNet by default, the polyp datasets, PraNet's mean Dice and IoU
    (``segkit.metrics.polyp``) beside the saliency scores."""

    name = "polyp"
    primary_metric = "mdice"
    metric_keys = (*SaliencyTask.metric_keys, "mdice", "miou", "max_dice", "max_iou")
    table_metrics = ("mdice", "miou", "wfm", "sm", "max_em", "mae")
    caption_keys = {"Dice": "mdice", "IoU": "miou"}
    default_arch = "pranet"
    default_loss = "structure"
    default_config = "demo_polyp.yaml"

    @property
    def datasets(self):
        from segkit.data.saliency import POLYP

        return POLYP

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import polyp_sample

        return polyp_sample(split, index, spec)

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        """PraNet's layout: ``TrainDataset/image|mask`` (train) and ``TestDataset/Kvasir/images|masks`` (val)."""
        from segkit.data.builtin import BuiltinSpec, make_binary_demo, polyp_sample

        return make_binary_demo(out, polyp_sample, "TrainDataset", "TestDataset/Kvasir", "images", "masks",
                                spec or BuiltinSpec())  # fmt: skip

    def metrics(self, num_classes: int = 1, **options):
        from segkit.metrics.polyp import PolypMetrics

        return PolypMetrics(**options)

    def metric_conventions(self, num_classes: int) -> dict[str, str]:
        from segkit.metrics.card import polyp_conventions, saliency_conventions

        return {**saliency_conventions(), **polyp_conventions()}

    def summary(self, scores) -> str:
        return f"mDice {scores.mdice:.4f}, mIoU {scores.miou:.4f}, MAE {scores.mae:.4f}"


class SegmentationTask(Task):
    """Semantic segmentation: class-id masks (255 ignored), DeepLabv3+, the confusion-matrix metrics."""

    name = "segmentation"
    primary_metric = "miou"
    metric_keys = ("miou", "aacc", "macc", "fwiou", "mdice", "boundary_iou")
    caption_keys = {"IoU": "miou", "BIoU": "boundary_iou"}
    image_metric_options = {"trimap_widths_px": ()}

    def metric_conventions(self, num_classes: int) -> dict[str, str]:
        from segkit.metrics.card import segmentation_conventions

        return segmentation_conventions(num_classes)

    default_loss = "ce"
    default_config = "demo_segmentation.yaml"
    labels = True
    mask_readings = ("standard", "255-as-class-1")

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        from segkit.data.masks import void_only

        if not void_only(mask):
            return None
        return (
            "holds only 0 and 255 where class ids are expected, so its object is 'ignore' (255): a 0/255 "
            "binary mask? Read 255 as class 1 with --set data.mask_values=255-as-class-1 (and model.num_classes=2)"
        )

    def read_mask(self, path: Path | str) -> np.ndarray:
        from segkit.data.io import read_label

        return read_label(path)

    def mask_problem(self, mask: np.ndarray, num_classes: int) -> str | None:
        from segkit.conventions import label_range_problem

        return label_range_problem(mask, num_classes)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import segmentation_sample

        return segmentation_sample(split, index, spec)

    def builtin_classes(self) -> tuple[str, ...]:
        from segkit.data.builtin import SEGMENTATION_CLASSES

        return SEGMENTATION_CLASSES

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        if not num_classes:
            raise SegkitError(
                "training segmentation on --images/--masks folders needs the number of classes: "
                "--set model.num_classes=N (class ids 0..N-1 in the masks, 255 ignored)"
            )
        return tuple(f"class {i}" for i in range(num_classes))

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        from segkit.data.builtin import BuiltinSpec, make_segmentation_demo

        return make_segmentation_demo(out, spec or BuiltinSpec())

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """A PASCAL VOC folder: train = train_aug when its split file exists (else train), val = val."""
        from segkit.data.voc import VOC_CLASSES, voc_samples, voc_train_split

        voc_split = voc_train_split(root) if split == "train" else split
        return self.file_source(voc_samples(root, voc_split), f"{root} ({voc_split})", VOC_CLASSES, reading)

    def check_dataset(self, root: Path | str) -> CheckReport:
        from segkit.data.check import check_root, check_segmentation

        return check_segmentation(check_root(root), self.mask_checks())

    def train_transform(self, size_px: int):
        from segkit.data.transforms import segmentation_train

        return segmentation_train(size_px)

    def target(self, mask: np.ndarray) -> torch.Tensor:
        from segkit.data.transforms import label_target

        return label_target(mask)

    def build_network(self, backbone, num_classes, output_stride, pretrained_backbone, decoder_channels, arch=None):
        from segkit.models.segmentation import DEFAULT_ARCH, SmpSegmentation

        return SmpSegmentation(
            backbone, num_classes, output_stride, pretrained_backbone, decoder_channels, arch or DEFAULT_ARCH
        )

    def validate_config(self, config) -> None:
        from segkit.models.segmentation import DEFAULT_ARCH, arch_size_multiple

        arch = (config.model.arch or DEFAULT_ARCH).lower()
        multiple = arch_size_multiple(arch, config.model.output_stride)
        if config.data.image_size % multiple:
            raise SegkitError(
                f"config key 'data.image_size' must be a multiple of {multiple} for segmentation with {arch}, got "
                f"{config.data.image_size}"
            )

    def network_probs(self, net: Net, x: torch.Tensor, settings: InferenceSettings, size) -> torch.Tensor:
        from segkit.engine.inference import segmentation_probs

        return segmentation_probs(net, x, settings)[0]  # (C, H, W)

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        # torch's max over the classes gives the first maximum, as numpy's argmax does, in 3.8 ms against 8.5 ms
        # for 21 classes at 500x375 (numpy's argmax over the first axis of a C-ordered array is slow)
        import torch

        return torch.from_numpy(np.ascontiguousarray(probs)).max(0).indices.numpy().astype(np.uint8)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        return probs.max(0)

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        from segkit.data.voc import save_label_png

        save_label_png(path, mask)

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        from segkit.conventions import IGNORE_INDEX

        return (mask > 0) & (mask != IGNORE_INDEX)  # any class but background

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        return mask

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A wrong pixel on ground-truth background is a false positive, a wrong pixel on an object a false
        negative (missed or mislabelled); ignored pixels count as neither."""
        from segkit.conventions import IGNORE_INDEX

        wrong = (pred != gt) & (gt != IGNORE_INDEX)
        return wrong & (gt == 0), wrong & (gt != 0)

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        from segkit.data.voc import voc_palette

        return voc_palette()[mask]

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        colour = self.mask_rgb(mask)  # VOC colours; background and ignored pixels left as they are
        weight = self.foreground(mask).astype(np.float32)[..., None] * alpha
        return (image * (1 - weight) + colour * weight).astype(np.uint8)

    def metrics(self, num_classes: int, **options):
        from segkit.metrics.segmentation import SegmentationMetrics

        if num_classes < 1:
            raise SegkitError("segmentation scores need the number of classes (--num-classes N, 21 for VOC)")
        return SegmentationMetrics(num_classes, **options)

    def details_table(self, scores, class_names: tuple[str, ...]) -> str | None:
        """IoU and Boundary IoU per class (classes absent from both prediction and ground truth show '-')."""
        lines = [f"{'class':<16} {'IoU':>7} {'BIoU':>7}"]
        for c, (iou, biou) in enumerate(zip(scores.per_class_iou, scores.per_class_boundary_iou, strict=True)):
            name = class_names[c] if c < len(class_names) else f"class {c}"
            shown = ["-" if v is None else f"{v:.4f}" for v in (iou, biou)]
            lines.append(f"{name:<16} {shown[0]:>7} {shown[1]:>7}")
        return "\n".join(lines)


class _MaskCheck:
    """A training source's mask check (picklable: it names its task): the task's problems, and its surprises
    while the values are read the standard way."""

    def __init__(self, task: str, reading: str) -> None:
        self.task, self.reading = task, reading

    def __call__(self, mask: np.ndarray, num_classes: int, path: Path | str | None = None) -> str | None:
        task = get_task(self.task)
        problem = task.mask_problem(mask, num_classes)
        if problem is None and self.reading == "standard":
            problem = task.mask_surprise(mask, path)
        return problem


TASKS: dict[str, Task] = {
    task.name: task for task in (SaliencyTask(), SegmentationTask(), CamouflageTask(), PolypTask())
}


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (a Task is returned as it is); an unknown name lists the valid ones."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise unknown_name("task", str(name), TASKS)
    return TASKS[name]


def require_task(asked: str | None, trained_for: str, what: str) -> None:
    """Stop when a user's ``--task`` (``asked``; None: not given) is not the task ``what`` was trained for."""
    if asked is not None and get_task(asked).name != get_task(trained_for).name:
        raise SegkitError(f"{what} is a {trained_for} model, but --task {asked} was given")
