"""segkit's networks: the Res2Net backbone family, DeepLabv3+ and the PoolNet-style saliency network."""

from segkit.accel.fast import prepare_for_inference
from segkit.models.backbones import backbone_names, create_backbone
from segkit.models.factory import create_model, model_from_config
from segkit.models.poolnet import PoolNet
from segkit.models.res2net import Bottle2neck, Res2Net, Res2NetSpec
from segkit.models.segmentation import (
    DeepLabV3Plus,
    SmpSegmentation,
    register_smp_encoders,
    smp_architectures,
)

__all__ = [
    "Bottle2neck",
    "DeepLabV3Plus",
    "PoolNet",
    "Res2Net",
    "Res2NetSpec",
    "SmpSegmentation",
    "backbone_names",
    "create_backbone",
    "create_model",
    "model_from_config",
    "prepare_for_inference",
    "register_smp_encoders",
    "smp_architectures",
]
