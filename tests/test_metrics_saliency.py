"""Saliency metrics against PySODMetrics (the oracle) and the reference values of the shared data."""

import json
import zlib

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest

from segkit.metrics import SaliencyMetrics

KEYS = ("mae", "sm", "wfm", "adp_fm", "mean_fm", "max_fm", "adp_em", "mean_em", "max_em")


def oracle(pairs):
    fm, wfm, sm, em, mae = psm.Fmeasure(), psm.WeightedFmeasure(), psm.Smeasure(), psm.Emeasure(), psm.MAE()
    for pred, gt in pairs:
        for m in (fm, wfm, sm, em, mae):
            m.step(pred=pred, gt=gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {
        "mae": mae.get_results()["mae"],
        "sm": sm.get_results()["sm"],
        "wfm": wfm.get_results()["wfm"],
        "adp_fm": f["adp"],
        "mean_fm": f["curve"].mean(),
        "max_fm": f["curve"].max(),
        "adp_em": e["adp"],
        "mean_em": e["curve"].mean(),
        "max_em": e["curve"].max(),
    }


def ours(pairs):
    m = SaliencyMetrics()
    for pred, gt in pairs:
        m.update(pred, gt)
    return m.compute().scalars()


def assert_close(got, want, tol=1e-6):
    for k in KEYS:
        if np.isnan(want[k]):
            assert np.isnan(got[k]), k
        else:
            assert abs(got[k] - want[k]) <= tol, (k, got[k], want[k])


def read_set(root, name):
    pairs = []
    for p in sorted((root / name / "pred").glob("*.png")):
        pred = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        gt = cv2.imread(str(root / name / "gt" / p.name), cv2.IMREAD_GRAYSCALE)
        pairs.append((pred, gt))
    return pairs


@pytest.mark.parametrize("name", ["ecssd-pascals-soc", "cod10k-sinet"])
def test_reference_data(name, sod_reference):
    ref = json.loads((sod_reference / "REFERENCE.json").read_text())[name]
    pairs = read_set(sod_reference, name)
    assert len(pairs) == 3
    got = ours(pairs)
    assert_close(got, ref["pysodmetrics_1_6"])
    assert_close(got, oracle(pairs))
    if "matlab_toolbox_3dp" in ref:
        for k, v in ref["matlab_toolbox_3dp"].items():
            assert round(got[k], 3) == pytest.approx(v, abs=1e-3), k


def _blob(rng, h, w):
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, h / 2 + 1), rng.uniform(1, w / 2 + 1)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


def random_case(rng, kind, h, w):
    gt_mask = _blob(rng, h, w)
    if kind == "empty_gt":
        gt_mask[:] = False
    elif kind == "full_gt":
        gt_mask[:] = True
    gt = (gt_mask * 255).astype(np.uint8)
    if kind == "grey_gt":  # non-binary ground truth as in PASCAL-S
        gt = (gt_mask * rng.choice([64, 129, 200, 255], size=gt.shape)).astype(np.uint8)
    if kind == "constant_pred":
        pred = np.full((h, w), rng.integers(0, 256), np.uint8)
    elif kind == "noise":
        pred = rng.integers(0, 256, (h, w)).astype(np.uint8)
    else:
        soft = cv2.GaussianBlur(_blob(rng, h, w).astype(np.float32) * 0.6 + gt_mask * 0.4, (5, 5), 2)
        pred = np.clip(soft * 255 + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    return pred, gt


@pytest.mark.parametrize("kind", ["blobs", "noise", "empty_gt", "full_gt", "grey_gt", "constant_pred"])
@pytest.mark.parametrize("size", [(5, 7), (31, 17), (120, 90)])
def test_random_cases_match_pysodmetrics(kind, size):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{size}".encode()))
    pairs = [random_case(rng, kind, *size) for _ in range(4)]
    with np.errstate(all="ignore"):
        want = oracle(pairs)
    assert_close(ours(pairs), want)


def test_per_image_scores_and_curves():
    rng = np.random.default_rng(0)
    pred, gt = random_case(rng, "blobs", 60, 80)
    m = SaliencyMetrics()
    scores = m.update(pred, gt)
    assert set(scores) >= {"mae", "sm", "wfm", "adp_fm", "adp_em", "boundary_iou"}
    out = m.compute()
    assert out.curves.precision.shape == out.curves.recall.shape == out.curves.fmeasure.shape == (256,)
    assert out.max_fm == pytest.approx(out.curves.fmeasure.max())
    m.reset()
    with pytest.raises(ValueError, match="update"):
        m.compute()


def test_perfect_prediction():
    gt = np.zeros((40, 50), np.uint8)
    gt[10:30, 15:40] = 255
    out = ours([(gt.copy(), gt)])
    assert out["mae"] == 0 and out["max_fm"] == pytest.approx(1) and out["boundary_iou"] == 1
    assert out["sm"] == pytest.approx(1, abs=1e-9) and out["max_em"] == pytest.approx(1, abs=1e-3)


def test_merge_equals_single_pass():
    rng = np.random.default_rng(3)
    pairs = [random_case(rng, "blobs", 40, 30) for _ in range(6)]
    a, b = SaliencyMetrics(), SaliencyMetrics()
    for p, g in pairs[:2]:
        a.update(p, g)
    for p, g in pairs[2:]:
        b.update(p, g)
    a.merge(b)
    merged, single = a.compute().scalars(), ours(pairs)
    assert not any(np.isnan(single[k]) for k in KEYS)
    for k in KEYS:
        assert merged[k] == pytest.approx(single[k], abs=1e-9), k


def test_torch_input_and_bad_shapes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    pred, gt = random_case(rng, "blobs", 20, 20)
    m = SaliencyMetrics()
    m.update(torch.from_numpy(pred)[None], torch.from_numpy(gt))
    assert m.count == 1
    with pytest.raises(ValueError, match="differ in size"):
        m.update(pred, gt[:10])


def _border_objects(h, w, rng):
    """Ground truths whose object touches the top, bottom, left, right border, a corner, and none."""
    masks = []
    boxes = [
        (0, h // 3, w // 4, w // 2),  # top border
        (2 * h // 3, h, w // 3, w // 2),  # bottom
        (h // 4, h // 2, 0, w // 3),  # left
        (h // 3, h // 2, 2 * w // 3, w),  # right
        (0, h // 2, 0, w // 2),  # top-left corner
        (h // 4, 3 * h // 4, w // 4, w // 2),  # inside
    ]
    for y0, y1, x0, x1 in boxes:
        m = np.zeros((h, w), np.uint8)
        m[y0:y1, x0:x1] = 255
        masks.append(m)
    blob = (_blob(rng, h, w) * 255).astype(np.uint8)
    return [*masks, blob]


@pytest.mark.parametrize("size", [(206, 283), (37, 53), (64, 64), (101, 7), (300, 211)])
def test_smeasure_of_constant_predictions_equals_pysodmetrics(size):
    """A constant prediction leaves quadrants of uniform ground truth with one value: the standard scores them 1 or
    0 depending on np.mean's rounding (0.434 vs a histogram's 0.551 at 206x283, level 228); segkit follows it."""
    from py_sod_metrics import Smeasure

    rng = np.random.default_rng(size[0] * 1000 + size[1])
    for gt in _border_objects(*size, rng):
        for level in (1, 13, 77, 128, 200, 228, 254, 255):
            pred = np.full(size, level, np.uint8)
            oracle_sm = Smeasure()
            oracle_sm.step(pred, gt)
            m = SaliencyMetrics()
            got = m.update(pred, gt)["sm"]
            assert got == pytest.approx(oracle_sm.get_results()["sm"], abs=1e-9), (size, level)


def test_distance_weights_are_exact_and_the_same_on_every_run():
    """The weighted F-measure's distances equal SciPy's exact transform (sqrt of integers), and scoring the same
    pair twice gives the same bits (OpenCV's precise transform alone varies in its last float32 bits)."""
    from scipy.ndimage import distance_transform_edt

    from segkit.metrics.saliency import exact_distance_to

    rng = np.random.default_rng(3)
    for h, w in ((31, 17), (300, 400), (1200, 1600)):
        mask = _blob(rng, h, w)
        assert np.array_equal(exact_distance_to(mask), distance_transform_edt(~mask))
    corner = np.zeros((700, 707), bool)
    corner[0, 0] = True  # distances up to 995 px, just inside the rounding-safe range (float32 squares rounded)
    assert np.array_equal(exact_distance_to(corner), distance_transform_edt(~corner))
    far = np.zeros((1500, 1500), bool)
    far[0, 0] = True  # distances beyond the rounding-safe range: SciPy's transform
    assert np.array_equal(exact_distance_to(far), distance_transform_edt(~far))
    pred, gt = random_case(rng, "blobs", 120, 90)
    assert len({ours([(pred.copy(), gt.copy())])["wfm"] for _ in range(8)}) == 1


def _tie_heavy_masks(rng):
    """Masks where many background pixels are equally near several object pixels: pixel noise, scattered points,
    blocks, ellipses, objects on the border."""
    for i in range(240):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        kind = i % 4
        if kind == 0:
            yield rng.random((h, w)) < rng.uniform(0.01, 0.7)
        elif kind == 1:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h, 4), rng.integers(0, w, 4)] = True
            yield mask
        elif kind == 2:
            blocks = (rng.random((max(h // 6, 1), max(w // 6, 1))) < 0.4).astype(np.uint8)
            yield cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        else:
            yield _blob(rng, h, w)


def test_band_nearest_pixel_is_scipys_feature_transform():
    """Where the weighted F-measure's kernel reads (within 3 px of the object), the nearest object pixel found
    from the exact squared distances is the one SciPy's exact feature transform picks, ties included."""
    from scipy.ndimage import distance_transform_edt

    from segkit.metrics.saliency import SaliencyTruth

    rng = np.random.default_rng(11)
    ties = 0
    for mask in _tie_heavy_masks(rng):
        if not mask.any():
            continue
        truth = SaliencyTruth(mask)
        box = mask[truth.object_box]
        iy, ix = distance_transform_edt(~box, return_distances=False, return_indices=True)
        squared = truth.squared_distance[truth.object_box]
        read = cv2.dilate(box.view(np.uint8), np.ones((7, 7), np.uint8)).view(bool)  # what the kernel reads
        band, nearest = truth.nearest_object_pixel
        assert np.array_equal(np.flatnonzero(read & ~box), np.intersect1d(band, np.flatnonzero(read)))
        nearest_by_scipy = (iy * box.shape[1] + ix).ravel()
        assert np.array_equal(nearest, nearest_by_scipy[band])
        ys, xs = np.nonzero(box)
        for y, x in zip(*np.nonzero(read & ~box), strict=True):
            ties += int(np.count_nonzero((ys - y) ** 2 + (xs - x) ** 2 == squared[y, x]) > 1)
    assert ties > 10_000  # the cases do exercise the tie order


def test_band_search_falls_back_to_scipy_when_distances_are_not_exact():
    from segkit.metrics.saliency import SaliencyTruth, _feature_transform, band_nearest

    mask = np.zeros((40, 50), bool)
    mask[10:20, 15:30] = True
    truth = SaliencyTruth(mask)
    squared = truth.squared_distance.copy()
    squared[squared == 1] = 3  # no two squares sum to 3: no offset lands on the object
    assert band_nearest(mask, squared) is None
    far = np.zeros((1500, 1500), bool)
    far[1400, 3] = True  # distances beyond the rounding-safe range: no exact squares, SciPy's transform
    truth = SaliencyTruth(far)
    assert truth.squared_distance is None
    band, nearest = truth.nearest_object_pixel
    assert np.array_equal(band, np.arange(band.size))
    assert np.array_equal(nearest, _feature_transform(far[truth.object_box]).ravel())


@pytest.mark.parametrize("seed", range(3))
def test_weighted_f_with_tied_nearest_pixels_matches_pysodmetrics(seed):
    rng = np.random.default_rng(seed)
    for mask in _tie_heavy_masks(rng):
        gt = mask.astype(np.uint8) * 255
        pred = rng.integers(0, 256, gt.shape).astype(np.uint8)  # each tied pixel's choice changes the error
        oracle = psm.WeightedFmeasure()
        oracle.step(pred, gt)
        got = SaliencyMetrics().update(pred, gt)["wfm"]
        assert got == pytest.approx(oracle.get_results()["wfm"], abs=1e-12, rel=1e-12), gt.shape


def test_separable_gaussian_is_matlabs_kernel():
    from segkit.metrics.saliency import _gaussian_1d, _matlab_gaussian

    kernel = _matlab_gaussian()
    assert (kernel >= np.finfo(kernel.dtype).eps * kernel.max()).all(), "no entry under MATLAB's cut-off"
    assert np.abs(np.outer(_gaussian_1d(), _gaussian_1d()) - kernel).max() < 1e-17


@pytest.mark.parametrize("split", [(1, 1), (5, 7), (12, 9)])  # centroid at the corner (empty quadrants) and inside
def test_one_joint_histogram_holds_each_quadrants_counts(split, monkeypatch):
    import segkit.metrics.saliency as sal

    rng = np.random.default_rng(sum(split))
    raw = rng.integers(0, 256, (9, 12), dtype=np.uint8)
    truth = sal.SaliencyTruth(rng.random((9, 12)) > 0.6)
    truth.__dict__["centroid"] = split  # 1-based (x, y), as the S-measure splits
    x, y = split
    rows_cols = [(slice(None, y), slice(None, x)), (slice(None, y), slice(x, None)),
                 (slice(y, None), slice(None, x)), (slice(y, None), slice(x, None))]  # fmt: skip
    # each quadrant's (level, background/object) counts, by numpy on its pixels
    want = np.stack([np.bincount((raw[r, c].astype(int) * 2 + truth.mask[r, c]).ravel(), minlength=512).reshape(256, 2)
                     for r, c in rows_cols])  # fmt: skip
    assert np.array_equal(sal.quadrant_hists(raw, truth.quadrant_codes), want)
    monkeypatch.setattr(sal, "_FLOAT32_EXACT_COUNT", 0)  # as for an image of 2^24 pixels or more: numpy counts
    assert np.array_equal(sal.quadrant_hists(raw, truth.quadrant_codes), want)


def test_an_empty_prediction_is_a_value_error():
    from segkit.metrics.saliency import SaliencyMetrics

    with pytest.raises(ValueError, match="no pixels"):  # what eval reports as a bad file, never a traceback
        SaliencyMetrics().update(np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8))


@pytest.mark.parametrize("kind", ["noise", "constant", "two levels"])
def test_binarised_map_and_line_counts_equal_the_pixelwise_forms(kind):
    """The boundary IoU's binarised prediction (one OpenCV threshold on the raw levels) is ``pred >= t`` on the
    prepared map at every threshold, none reached and all reached included; the object's size, box and centroid
    from OpenCV's row and column sums equal numpy's on the mask."""
    import segkit.metrics.saliency as sal

    rng = np.random.default_rng(3)
    raw = {
        "noise": rng.integers(0, 256, (31, 47)),
        "constant": np.full((31, 47), 77),
        "two levels": rng.choice([40, 41], (31, 47)),
    }[kind].astype(np.uint8)
    truth = sal.SaliencyTruth(rng.random((31, 47)) > 0.7)
    pair = sal.prepare(raw, truth)
    for t in (-0.1, 0.0, 1 / 255, 0.5, 0.999, 1.0, 1.1):
        assert np.array_equal(sal.binarised(pair, t), pair.pred >= t), t
    mask = truth.mask
    assert truth.object_pixels == np.count_nonzero(mask)
    ys, xs = np.nonzero(mask)  # the rounded mean of the object's pixel coordinates, 1-based
    assert truth.centroid == (int(np.round(xs.mean())) + 1, int(np.round(ys.mean())) + 1)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert truth.object_box == (
        slice(max(rows[0] - 4, 0), min(rows[-1] + 5, 31)),
        slice(max(cols[0] - 4, 0), min(cols[-1] + 5, 47)),
    )
