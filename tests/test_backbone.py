"""The Res2Net family against timm (the oracle) and the official parameter table."""

import pytest
import timm
import torch

from segkit.errors import SegkitError
from segkit.models import backbone_names, create_backbone
from tests.conftest import max_rel_err, randomize_batchnorm

# segkit name -> timm name
ORACLE_PAIRS = [
    ("res2net50_26w_4s", "res2net50_26w_4s"),
    ("res2net50_14w_8s", "res2net50_14w_8s"),
    ("res2net50_48w_2s", "res2net50_48w_2s"),
    ("res2next50", "res2next50"),
    ("res2net50_v1b_26w_4s", "res2net50d"),
]


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("name,timm_name", ORACLE_PAIRS)
def test_features_match_timm(name, timm_name, output_stride):
    ours = randomize_batchnorm(create_backbone(name, output_stride=output_stride)).eval()
    kwargs = {} if output_stride == 32 else {"output_stride": output_stride}
    ref = timm.create_model(timm_name, features_only=True, out_indices=(1, 2, 3, 4), **kwargs).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # identical key sets
    x = torch.randn(2, 3, 75, 53)  # sides that are not powers of two
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert len(got) == 4
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert max_rel_err(g, w) < 1e-4
    assert [f.shape[1] for f in got] == list(ours.out_channels)


@pytest.mark.parametrize(
    "name,millions",
    [
        ("res2net50_26w_4s", 25.70),
        ("res2net50_48w_2s", 25.29),
        ("res2net50_14w_8s", 25.06),
        ("res2net50_v1b_26w_4s", 25.72),
        ("res2net101_26w_4s", 45.21),
    ],
)
def test_parameter_count_matches_official_table(name, millions):
    backbone = create_backbone(name)
    fc = 2048 * 1000 + 1000  # the ImageNet classifier the table counts
    total = sum(p.numel() for p in backbone.parameters()) + fc
    assert round(total / 1e6, 2) == millions


def test_timm_aliases_build_the_v1b_networks():
    a, b = create_backbone("res2net50d"), create_backbone("res2net50_v1b_26w_4s")
    assert a.state_dict().keys() == b.state_dict().keys()
    assert "conv1.6.weight" in a.state_dict() and "layer2.0.downsample.1.weight" in a.state_dict()


@pytest.mark.parametrize("output_stride,last_size", [(32, 3), (16, 5), (8, 9)])
def test_output_stride_sets_strides_and_shapes(output_stride, last_size):
    backbone = create_backbone("res2net50_26w_4s", output_stride=output_stride)
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 65, 65))
    assert feats[-1].shape[-1] == last_size
    assert backbone.strides[-1] == output_stride
    assert backbone.out_channels == (256, 512, 1024, 2048)


def test_unknown_name_lists_valid_names_and_closest():
    with pytest.raises(SegkitError) as err:
        create_backbone("res2net50_26w_4")
    msg = str(err.value)
    assert "res2net50_26w_4s" in msg and "Did you mean" in msg and "resnet50" in msg


def test_bad_output_stride_is_an_error():
    with pytest.raises(SegkitError, match="output_stride"):
        create_backbone("res2net50_26w_4s", output_stride=4)


def test_baselines_come_from_timm():
    backbone = create_backbone("resnet50", output_stride=16)
    assert type(backbone.body).__module__.startswith("timm")
    assert backbone.out_channels == (256, 512, 1024, 2048)
    assert "resnet50d" in backbone_names()
