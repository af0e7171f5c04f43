"""Camouflaged object detection (COD)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from segkit.data.builtin import BuiltinSpec

from segkit.tasks.saliency import SaliencyTask


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

        folders = {
            "train": ("TrainDataset/Imgs", "TrainDataset/GT"),
            "val": ("TestDataset/CAMO/Imgs", "TestDataset/CAMO/GT"),
        }
        return make_binary_demo(out, camouflage_sample, folders, spec or BuiltinSpec())

    table_note = "SINet-V2's columns: S-measure, mean E-measure, weighted F, MAE"
