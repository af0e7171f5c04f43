"""segkit's networks: the Res2Net backbone family, DeepLabv3+ and the PoolNet-style saliency network."""

from segkit.models.backbones import backbone_names, create_backbone
from segkit.models.res2net import Bottle2neck, Res2Net, Res2NetSpec

__all__ = ["Bottle2neck", "Res2Net", "Res2NetSpec", "backbone_names", "create_backbone"]
