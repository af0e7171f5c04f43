"""Pre/post-processing shared by eval, predict and ONNX: sliding window, padding, TTA."""

import numpy as np
import torch

from segkit.inference.pipeline import InferenceSettings, predict_probs
from segkit.tasks import get_task


def pointwise_net(classes: int = 3):
    """A per-pixel classifier: its output at a pixel depends on that pixel alone, so tiling must not change it."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, classes, 1)
    return lambda x: conv(x)


def test_sliding_window_equals_whole_image():
    net = pointwise_net()
    image = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    whole = predict_probs(net, image, InferenceSettings("segmentation", size_multiple=16, window_px=512))
    tiled = predict_probs(net, image, InferenceSettings("segmentation", size_multiple=16, window_px=48))
    assert whole.shape == tiled.shape == (3, 100, 150)
    assert np.abs(whole - tiled).max() < 1e-5


def test_tta_keeps_the_original_size():
    net = pointwise_net(1)
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    probs = predict_probs(net, image, InferenceSettings("saliency", saliency_size_px=64, tta=True))
    assert probs.shape == (37, 53) and 0 <= probs.min() and probs.max() <= 1
    seg = predict_probs(pointwise_net(), image, InferenceSettings("segmentation", size_multiple=16, tta=True))
    assert seg.shape == (3, 37, 53) and np.allclose(seg.sum(0), 1, atol=1e-5)
    assert get_task("segmentation").to_mask(seg).dtype == np.uint8
    assert get_task("saliency").to_mask(probs).dtype == np.uint8


def test_segmentation_mask_is_numpys_argmax_ties_included():
    rng = np.random.default_rng(0)
    probs = rng.random((21, 37, 50), dtype=np.float32)
    probs[3, :5] = probs[7, :5] = 2.0  # a tie: the first class wins, as in numpy
    probs[:, 10] = 0.5  # all tied: class 0
    mask = get_task("segmentation").to_mask(probs)
    assert mask.dtype == np.uint8 and np.array_equal(mask, probs.argmax(0))
    assert np.array_equal(get_task("segmentation").to_mask(probs[:, ::2]), probs[:, ::2].argmax(0))  # strided


def test_resampling_to_the_same_size_is_skipped_and_changes_nothing():
    import torch.nn.functional as F

    from segkit.inference.pipeline import _resized

    logits = torch.randn(1, 3, 17, 23)
    assert _resized(logits, (17, 23)) is logits
    assert torch.equal(F.interpolate(logits, size=(17, 23), mode="bilinear", align_corners=False), logits)
    assert _resized(logits, (34, 46)).shape == (1, 3, 34, 46)
