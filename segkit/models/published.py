"""The published Res2Net networks whose authors released weights, and how their files map onto segkit's modules.

``PUBLISHED`` is the table: each entry names the network, its task and segkit architecture, the paper, the code
and weights it comes from with their licence terms, the numbers the paper reports, and ``keys``: the rule that
turns the authors' state-dict names into segkit's (and back, for messages). ``identify(state)`` finds which network
a released file holds from its keys, or says which network it is closest to and what does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from segkit.errors import SegkitError, unknown_name

Renames = Mapping[str, str]  # the dotted part right after a prefix -> segkit's


@dataclass(frozen=True)
class KeyRule:
    """Keys starting with ``authors`` start with ``segkit`` instead; the dotted part right after the prefix is
    renamed by ``inner`` (e.g. ``conv_cat`` -> ``fuse``, ``branch1`` -> ``branches.1``)."""

    authors: str
    segkit: str
    inner: Renames = field(default_factory=dict)


@dataclass(frozen=True)
class KeyMap:
    """An invertible map between the authors' state-dict names and segkit's; ``unused``: prefixes of the authors'
    entries the network never reads (the ImageNet classifier kept in the backbone)."""

    rules: tuple[KeyRule, ...]
    unused: tuple[str, ...] = ()

    def to_segkit(self, key: str) -> str | None:
        return _apply(key, [(r.authors, r.segkit, r.inner) for r in self.rules])

    def to_authors(self, key: str) -> str | None:
        return _apply(key, [(r.segkit, r.authors, {v: k for k, v in r.inner.items()}) for r in self.rules])

    def is_unused(self, key: str) -> bool:
        return key.startswith(self.unused)


def _apply(key: str, rules: list[tuple[str, str, Renames]]) -> str | None:
    """``key`` under the rule with the longest matching prefix, or None when no rule matches."""
    matching = [r for r in rules if key.startswith(r[0])]
    if not matching:
        return None
    src, dst, inner = max(matching, key=lambda r: len(r[0]))
    rest = key[len(src) :]
    renamed = [(a, b) for a, b in inner.items() if rest.startswith(a + ".")]  # a may span segments: branches.0
    if renamed:
        a, b = max(renamed, key=lambda r: len(r[0]))
        rest = b + rest[len(a) :]
    return dst + rest


@dataclass(frozen=True)
class PublishedNetwork:
    """One released network: what it is, where its weights come from and on what terms, how its file maps."""

    name: str  # segkit's name, e.g. "pranet-res2net50"
    task: str  # a name in segkit.tasks.TASKS
    arch: str  # the experiment config's model.arch
    backbone: str  # the experiment config's model.backbone
    build: Callable[[], nn.Module]
    keys: KeyMap
    outputs: tuple[str, ...]  # the authors' names of what forward_all returns (forward in their code)
    paper: str
    authors: str
    code: str  # the authors' repository and network definition
    weights: str  # the released file and where the authors publish it
    licence: str
    published: Mapping[str, Mapping[str, float]]  # test set -> score key -> the paper's number
    test_script: str  # what the authors' test script does with the outputs

    def expected_keys(self) -> dict[str, tuple[int, ...]]:
        """segkit's state-dict names and shapes for this network (built on the meta device: no memory, no time)."""
        with torch.device("meta"):
            return {k: tuple(v.shape) for k, v in self.build().state_dict().items()}


def _numbered(authors: str, segkit: str, count: int, start: int = 0, inner: Renames | None = None) -> list[KeyRule]:
    """``authors`` and ``segkit`` are format strings of one index: ``rfb{}_1.`` numbered from ``start``."""
    return [KeyRule(authors.format(start + i), segkit.format(i), dict(inner or {})) for i in range(count)]


_RFB_INNER = {"branch0": "branches.0", "branch1": "branches.1", "branch2": "branches.2", "branch3": "branches.3",
              "conv_cat": "fuse", "conv_res": "shortcut"}  # fmt: skip
_DECODER_INNER = {"conv_upsample1": "up4_to3", "conv_upsample2": "up4_to2", "conv_upsample3": "up3_to2",
                  "conv_upsample4": "up4_cat", "conv_upsample5": "up43_cat", "conv_concat2": "fuse3",
                  "conv_concat3": "fuse2", "conv4": "refine", "conv5": "score"}  # fmt: skip
_BACKBONE_V1B = KeyRule("resnet.", "backbone.")
_RFB_RULES = _numbered("rfb{}_1.", "rfb.{}.", 3, start=2, inner=_RFB_INNER)


def _pranet_keys() -> KeyMap:
    reverse = [
        KeyRule(f"ra{stage}_conv{i + 1}.", f"reverse.{branch}.convs.{i}.")
        for branch, (stage, convs) in enumerate(((4, 5), (3, 4), (2, 4)))
        for i in range(convs)
    ]
    return KeyMap((_BACKBONE_V1B, *_RFB_RULES, KeyRule("agg1.", "decoder.", _DECODER_INNER), *reverse), ("resnet.fc.",))


def _sinet_keys() -> KeyMap:
    steps = {"weak_gra": "steps.0", "medium_gra": "steps.1", "strong_gra": "steps.2"}
    reverse = [KeyRule(f"RS{stage}.", f"reverse.{i}.", steps) for i, stage in enumerate((5, 4, 3))]
    return KeyMap((_BACKBONE_V1B, *_RFB_RULES, KeyRule("NCD.", "decoder.", _DECODER_INNER), *reverse), ("resnet.fc.",))


def _poolnet_keys() -> KeyMap:
    rules = [
        KeyRule("base.resnet.", "backbone."),
        KeyRule("base.ppms_pre.", "guidance.reduce."),
        *_numbered("base.ppms.{}.1.", "guidance.bins.{}.", 3),
        KeyRule("base.ppm_cat.0.", "guidance.fuse."),
        *_numbered("base.infos.{}.0.", "guidance.guides.{}.", 4),
        *_numbered("convert.convert0.{}.0.", "laterals.{}.", 5),
        *_numbered("deep_pool.{}.", "fams.{}.", 5, inner={"conv_sum": "out", "conv_sum_c": "merge"}),
        KeyRule("score.score.", "score."),
    ]
    return KeyMap(tuple(rules), ("base.resnet.fc.",))


def _build_poolnet() -> nn.Module:
    from segkit.models.poolnet_res2net import PoolNetRes2Net

    return PoolNetRes2Net()


def _build_pranet() -> nn.Module:
    from segkit.models.pranet import PraNet

    return PraNet()


def _build_sinet() -> nn.Module:
    from segkit.models.sinet_v2 import SINetV2

    return SINetV2()


_RESIZED_352 = (
    "image resized to 352 x 352 (PIL bilinear, as torchvision's Resize), ImageNet mean/std; the last output "
    "resized to the image's size (bilinear, align_corners=False), sigmoid, min-max normalised per image"
)

PUBLISHED: dict[str, PublishedNetwork] = {
    n.name: n
    for n in (
        PublishedNetwork(
            name="poolnet-res2net50",
            task="saliency",
            arch="poolnet-res2net",
            backbone="res2net50_26w_4s",
            build=_build_poolnet,
            keys=_poolnet_keys(),
            outputs=("saliency_logits",),
            paper="Gao et al., Res2Net: A New Multi-Scale Backbone Architecture, TPAMI 2021 (with PoolNet: Liu et "
            "al., A Simple Pooling-Based Design for Real-Time Salient Object Detection, CVPR 2019)",
            authors="Shang-Hua Gao, Ming-Ming Cheng, Kai Zhao, Xin-Yu Zhang, Ming-Hsuan Yang, Philip Torr; "
            "PoolNet: Jiang-Jiang Liu, Qibin Hou, Ming-Ming Cheng, Jiashi Feng, Jianmin Jiang",
            code="github.com/Res2Net/Res2Net-PoolNet, networks/poolnet_res2net.py, build_model('res2net')",
            weights="the Res2Net-PoolNet README's 'Pre-trained models' (trained on DUTS-TR)",
            licence="code: MIT (Copyright (c) 2019 Jiang-Jiang Liu and Qibin Hou); the weights are released with it "
            "and state no other terms",
            published={"ECSSD": {"max_fm": 0.947, "mae": 0.036}, "DUTS-TE": {"max_fm": 0.892, "mae": 0.037}},
            test_script="the whole image at its own size, batch 1, RGB / 255 and ImageNet mean/std; "
            "the map is sigmoid(logit) x 255",
        ),
        PublishedNetwork(
            name="pranet-res2net50",
            task="polyp",
            arch="pranet",
            backbone="res2net50_v1b_26w_4s",
            build=_build_pranet,
            keys=_pranet_keys(),
            outputs=("lateral_map_5", "lateral_map_4", "lateral_map_3", "lateral_map_2"),
            paper="Fan et al., PraNet: Parallel Reverse Attention Network for Polyp Segmentation, MICCAI 2020",
            authors="Deng-Ping Fan, Ge-Peng Ji, Tao Zhou, Geng Chen, Huazhu Fu, Jianbing Shen, Ling Shao",
            code="github.com/DengPingFan/PraNet, lib/PraNet_Res2Net.py, PraNet()",
            weights="PraNet-19.pth, linked from the PraNet README (trained on Kvasir-SEG 900 + CVC-ClinicDB 550)",
            licence="free for research and education use only; commercial use needs the authors' formal "
            "permission (PraNet README, 'License')",
            published={"Kvasir": {"mdice": 0.898, "miou": 0.840}, "CVC-ClinicDB": {"mdice": 0.899, "miou": 0.849}},
            test_script=_RESIZED_352,
        ),
        PublishedNetwork(
            name="sinet-v2-res2net50",
            task="camouflage",
            arch="sinet-v2",
            backbone="res2net50_v1b_26w_4s",
            build=_build_sinet,
            keys=_sinet_keys(),
            outputs=("S_g_pred", "S_5_pred", "S_4_pred", "S_3_pred"),
            paper="Fan et al., Concealed Object Detection (SINet-V2), TPAMI 2022",
            authors="Deng-Ping Fan, Ge-Peng Ji, Ming-Ming Cheng, Ling Shao",
            code="github.com/GewelsJI/SINet-V2, lib/Network_Res2Net_GRA_NCD.py, Network(channel=32)",
            weights="Net_epoch_best.pth, linked from the SINet-V2 README (trained on COD10K-train + CAMO-train)",
            licence="free for research and education use only; commercial use needs the authors' formal "
            "permission (SINet-V2 README, 'License'; the repository's LICENSE file is Apache-2.0)",
            published={"COD10K": {"sm": 0.815, "mean_em": 0.887, "wfm": 0.680, "mae": 0.037}},
            test_script=_RESIZED_352,
        ),
    )
}

ARCHS: dict[str, PublishedNetwork] = {n.arch: n for n in PUBLISHED.values()}  # model.arch -> network


def get_published(name: str) -> PublishedNetwork:
    """The published network called ``name`` (segkit's name or its architecture)."""
    if name in PUBLISHED:
        return PUBLISHED[name]
    if name in ARCHS:
        return ARCHS[name]
    raise unknown_name("published network", name, PUBLISHED)


@dataclass(frozen=True)
class KeyFit:
    """How a state dict's keys fit one network."""

    network: PublishedNetwork
    state: dict[str, torch.Tensor]  # the entries under segkit's names (unused ones dropped)
    missing: list[str]  # the network's entries absent from the file, in the authors' names
    unexpected: list[str]  # the file's entries the network does not have, as the file names them
    wrong_shape: list[str]  # "name (file shape vs network shape)"

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    @property
    def matched(self) -> int:
        return len(self.state) - len(self.wrong_shape)


def fit(network: PublishedNetwork, state: Mapping[str, torch.Tensor]) -> KeyFit:
    """Map ``state`` (the authors' names) onto ``network`` and list what does not fit."""
    expected = network.expected_keys()
    mapped, unexpected, wrong = {}, [], []
    for key, tensor in state.items():
        if network.keys.is_unused(key):
            continue
        ours = network.keys.to_segkit(key)
        if ours not in expected:
            unexpected.append(key)
            continue
        mapped[ours] = tensor
        if tuple(tensor.shape) != expected[ours]:
            wrong.append(f"{key} ({tuple(tensor.shape)} vs {expected[ours]})")
    missing = [network.keys.to_authors(k) or k for k in expected if k not in mapped]
    return KeyFit(network, mapped, missing, unexpected, wrong)


def identify(state: Mapping[str, torch.Tensor], source: str) -> KeyFit:
    """The published network whose state dict ``state`` is (its keys fit exactly), or a SegkitError naming the
    closest network and the first entries that do not fit. ``source`` names the file in the message."""
    fits = [fit(n, state) for n in PUBLISHED.values()]
    for f in fits:
        if f.exact:
            return f
    best = max(fits, key=lambda f: f.matched)
    raise SegkitError(
        f"{source} is not the state dict of a network segkit knows: closest is '{best.network.name}' "
        f"({best.matched} of {len(state)} entries fit); missing: {_first(best.missing)}; unexpected: "
        f"{_first(best.unexpected)}; wrong shape: {_first(best.wrong_shape)}. segkit reads the released files of "
        f"{', '.join(PUBLISHED)} as their authors saved them (optionally with a 'module.' prefix), and its own "
        "checkpoints and model folders"
    )


def _first(items: list[str], limit: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
