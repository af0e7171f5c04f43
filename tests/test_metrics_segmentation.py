"""Segmentation metrics against plain numpy computations; Boundary IoU against its definition."""

import numpy as np
import pytest
from scipy.ndimage import distance_transform_cdt

from segkit.metrics import SegmentationMetrics, boundary_iou, mask_boundary
from segkit.metrics.boundary import boundary_width_px


def numpy_reference(preds, gts, c, ignore=255):
    """Per-class counts by boolean masks, class by class (no bincount): an independent computation."""
    inter = np.zeros(c)
    gt_n = np.zeros(c)
    pr_n = np.zeros(c)
    for p, g in zip(preds, gts, strict=True):
        valid = g != ignore
        for k in range(c):
            inter[k] += np.sum((p == k) & (g == k) & valid)
            gt_n[k] += np.sum((g == k) & valid)
            pr_n[k] += np.sum((p == k) & valid)
    union = gt_n + pr_n - inter
    present = union > 0
    iou = inter[present] / union[present]
    total = gt_n.sum()
    return {
        "miou": iou.mean(),
        "aacc": inter.sum() / total,
        "macc": np.mean(inter[gt_n > 0] / gt_n[gt_n > 0]),
        "fwiou": np.sum((gt_n[present] / total) * iou),
        "mdice": np.mean(2 * inter[present] / (gt_n[present] + pr_n[present])),
    }


def test_against_numpy_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    c = 6
    preds, gts = [], []
    for _ in range(5):
        g = rng.choice([0, 1, 2, 255], size=(30, 40), p=[0.5, 0.2, 0.2, 0.1]).astype(np.uint8)
        p = np.where(rng.random(g.shape) < 0.7, g, rng.choice([0, 1, 2, 4], size=g.shape)).astype(np.uint8)
        p[g == 255] = rng.integers(0, c, size=int((g == 255).sum()))
        preds.append(p)
        gts.append(g)
    m = SegmentationMetrics(c)
    for p, g in zip(preds, gts, strict=True):
        m.update(p, g)
    got, want = m.compute(), numpy_reference(preds, gts, c)
    for k, v in want.items():
        assert getattr(got, k) == pytest.approx(v, abs=1e-12), k
    assert got.per_class_iou[3] is None and got.per_class_iou[5] is None  # absent from both sides
    assert got.per_class_iou[4] == 0.0  # predicted only: counts as 0, as in mmsegmentation


def test_out_of_range_labels_are_errors():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match="class 7"):
        m.update(np.full((4, 4), 7, np.uint8), np.zeros((4, 4), np.uint8))


def direct_boundary(mask, d):
    """A mask pixel is boundary iff a non-mask pixel (outside the image included) lies within chessboard
    distance d: the definition of erosion by a 3x3 square applied d times, on the zero-padded mask."""
    padded = np.pad(mask.astype(bool), 1)
    dist = distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    return mask.astype(bool) & (dist <= d)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_boundary_matches_definition(d):
    rng = np.random.default_rng(d)
    for _ in range(5):
        mask = np.zeros((37, 53), bool)
        mask[rng.integers(0, 20) : rng.integers(20, 37), rng.integers(0, 25) : rng.integers(25, 53)] = True
        mask[rng.random(mask.shape) < 0.05] ^= True
        assert np.array_equal(mask_boundary(mask, d), direct_boundary(mask, d))


def test_boundary_iou_on_constructed_masks():
    gt = np.zeros((100, 100), bool)
    gt[20:80, 20:80] = True
    d = boundary_width_px(100, 100)
    assert d == 3  # round(0.02 * 141.4)
    shifted = np.roll(gt, 2, axis=1)
    bg, bp = direct_boundary(gt, d), direct_boundary(shifted, d)
    want = (bg & bp).sum() / (bg | bp).sum()
    assert boundary_iou(shifted, gt) == pytest.approx(want)
    assert boundary_iou(gt, gt) == 1.0
    assert boundary_iou(np.zeros_like(gt), gt) == 0.0


def test_boundary_and_trimap_accumulate():
    gt = np.zeros((64, 64), np.uint8)
    gt[16:48, 16:48] = 1
    m = SegmentationMetrics(2, trimap_widths_px=(2, 8))
    m.update(gt, gt)
    out = m.compute()
    assert out.boundary_iou == 1.0 and out.trimap_miou == {2: 1.0, 8: 1.0}
    m.reset()
    eroded = np.zeros_like(gt)
    eroded[18:46, 18:46] = 1
    m.update(eroded, gt)
    out = m.compute()
    assert out.trimap_miou[2] < out.trimap_miou[8] < 1.0  # errors are densest near the boundary
    assert out.boundary_iou < 0.7 and out.miou > out.boundary_iou
