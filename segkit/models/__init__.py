"""segkit's networks: what a network *is*. The Res2Net backbone family (and timm's ResNets as backbones), smp's
architectures on them (DeepLabv3+ by default), segkit's PoolNet-style saliency network, the published networks
(PoolNet-Res2Net, PraNet, SINet-V2), their losses, and reading weight files.

Importing this package registers every segkit backbone with segmentation-models-pytorch as ``segkit-<name>``
(``segmentation.register_smp_encoders``; see there why at import). ``prepare_for_inference`` is the acceleration
layer's (``segkit.accel``), exported here under the name the README has always given it."""

from segkit.accel.fast import prepare_for_inference
from segkit.models.backbones import backbone_names, create_backbone
from segkit.models.factory import create_model, model_from_config
from segkit.models.poolnet import PoolNet
from segkit.models.res2net import Bottle2neck, Res2Net, Res2NetSpec
from segkit.models.segmentation import (
    SmpSegmentation,
    register_smp_encoders,
    smp_architectures,
)

__all__ = [
    "Bottle2neck",
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
