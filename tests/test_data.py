"""Dataset layouts built in temp dirs, loaded through the public API; the bad inputs of the data issue."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from segkit.cli import main
from segkit.data.builtin import BuiltinSpec
from segkit.data.datasets import TrainDataset, collate
from segkit.data.io import BadFileError, read_gray, read_label, read_rgb
from segkit.data.saliency import LAYOUTS, find_saliency_sources
from segkit.data.voc import prepare_voc_aug, voc_palette, voc_samples
from segkit.errors import SegkitError
from segkit.tasks import get_task


def build_source(task, root, split):
    return get_task(task).source(root, split)


def check_dataset(root, task):
    return get_task(task).check_dataset(root)


def generate_sample(task, split, index):
    return get_task(task).builtin_sample(split, index, BuiltinSpec())


def train_dataset(source, task, size_px):
    task = get_task(task)
    return TrainDataset(source, task.train_transform(size_px), task.target)


def write_jpg(path, rng, size=(40, 50)):
    cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def write_palette(path, labels):
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().ravel().tolist())
    im.save(path)


def make_voc(root, ids_train, ids_val, rng, size=(40, 50)):
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i in ids_train + ids_val:
        write_jpg(voc / "JPEGImages" / f"{i}.jpg", rng, size)
        labels = rng.choice([0, 5, 15, 255], size=size).astype(np.uint8)
        write_palette(voc / "SegmentationClass" / f"{i}.png", labels)
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids_train) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids_val) + "\n")
    return voc


@pytest.mark.parametrize("given", ["root", "VOCdevkit", "VOC2012"])
def test_voc_layout_reads_palette_indices(tmp_path, given):
    rng = np.random.default_rng(0)
    voc = make_voc(tmp_path, ["2007_000001", "2007_000002"], ["2007_000003"], rng)
    root = {"root": tmp_path, "VOCdevkit": tmp_path / "VOCdevkit", "VOC2012": voc}[given]
    source = build_source("segmentation", root, "val")
    image, mask, name = source.load(0)
    assert name == "2007_000003" and image.shape == (40, 50, 3)
    assert set(np.unique(mask)) <= {0, 5, 15, 255}  # indices, not colours
    assert source.num_classes == 21
    assert len(voc_samples(root, "train")) == 2


def test_prepare_voc_aug_from_sbd_mat_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    voc = make_voc(tmp_path, ["2007_000001", "2007_000002"], ["2007_000003"], rng)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    sbd_ids = ["2007_000002", "2007_000003", "2008_000010", "2008_000011"]
    for i in sbd_ids:
        seg = rng.choice([0, 3, 7], size=(40, 50)).astype(np.uint8)
        savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.array([3, 7])}})
        if i.startswith("2008"):
            write_jpg(voc / "JPEGImages" / f"{i}.jpg", rng)
    (sbd / "train.txt").write_text("2007_000002\n2008_000010\n")
    (sbd / "val.txt").write_text("2007_000003\n2008_000011\n")
    assert (
        main(
            [
                "data",
                "prepare-voc-aug",
                "--voc",
                str(tmp_path / "VOCdevkit"),
                "--sbd",
                str(tmp_path / "benchmark_RELEASE"),
            ]
        )
        == 0
    )
    ids = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    # VOC train + SBD train/val - VOC val
    assert ids == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
    converted = read_label(voc / "SegmentationClassAug" / "2008_000010.png")
    want = np.asarray(
        __import__("scipy.io")
        .io.loadmat(sbd / "cls" / "2008_000010.mat", squeeze_me=True, struct_as_record=False)["GTcls"]
        .Segmentation
    )
    assert np.array_equal(converted, want)
    kept_voc = read_label(voc / "SegmentationClassAug" / "2007_000002.png")
    assert np.array_equal(kept_voc, read_label(voc / "SegmentationClass" / "2007_000002.png"))
    assert len(build_source("segmentation", tmp_path, "train")) == 4  # train_aug is used
    assert prepare_voc_aug(voc, sbd)["kept"] == 4


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay.name != "folders"], ids=lambda lay: lay.name)
def test_each_saliency_layout_is_recognised(tmp_path, layout):
    rng = np.random.default_rng(2)
    root = tmp_path / "datasets" / layout.name
    (root / layout.image_dir).mkdir(parents=True)
    (root / layout.mask_dir).mkdir(parents=True)
    img_ext = ".png" if layout.name == "HKU-IS" else ".jpg"
    for stem in ("a 1", "bé"):  # spaces and non-ASCII
        cv2.imencode(img_ext, rng.integers(0, 255, (30, 20, 3), dtype=np.uint8))[1].tofile(
            str(root / layout.image_dir / f"{stem}{img_ext}")
        )
        cv2.imencode(".png", (rng.random((30, 20)) * 255).astype(np.uint8))[1].tofile(
            str(root / layout.mask_dir / f"{stem}.png")
        )
    (root / layout.image_dir / "Thumbs.db").write_bytes(b"junk")  # ignored
    sources = find_saliency_sources(tmp_path / "datasets")
    assert [s.name for s in sources] == [layout.name]
    assert check_dataset(tmp_path / "datasets", "saliency").ok


def test_duts_train_and_val_and_grey_levels_kept(tmp_path):
    get_task("saliency").make_demo(tmp_path, BuiltinSpec(train_count=4, val_count=2))
    src = build_source("saliency", tmp_path, "train")
    assert len(src) == 4 and len(build_source("saliency", tmp_path, "val")) == 2
    mask_path = src.pairs[0][1]
    grey = np.zeros((128, 128), np.uint8)
    grey[10:50, 10:50] = 100  # non-binary ground truth
    cv2.imwrite(str(mask_path), grey)
    ds = train_dataset(src, "saliency", 64)
    sample = ds[0]
    assert sample["mask"].dtype.is_floating_point and 0 < float(sample["mask"].max()) <= 100 / 255 + 1e-6


def test_images_masks_folders(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(3):
        write_jpg(tmp_path / "im" / f"{i}.jpg", rng)
        cv2.imwrite(str(tmp_path / "gt" / f"{i}.png"), np.zeros((40, 50), np.uint8))
    from segkit.config import DataConfig
    from segkit.training.loader import build_sources

    write_jpg(tmp_path / "im" / "lonely.jpg", rng)  # an image without a mask: left out, by name
    data = DataConfig(images=str(tmp_path / "im"), masks=str(tmp_path / "gt"))
    sources = build_sources(get_task("saliency"), data, seed=0)
    assert len(sources.train) == 2 and len(sources.val) == 1  # one of three held out, and said
    assert "held out" in sources.note and "have no mask and are left out: lonely.jpg" in sources.note
    with pytest.raises(SegkitError, match="go together"):
        build_sources(get_task("saliency"), DataConfig(images=str(tmp_path / "im")), seed=0)


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(SegkitError, match="does not exist"):
        build_source("saliency", tmp_path / "nope", "train")
    with pytest.raises(SegkitError, match="no saliency dataset found"):
        build_source("saliency", tmp_path, "train")
    with pytest.raises(SegkitError, match="not a PASCAL VOC 2012 folder"):
        build_source("segmentation", tmp_path, "train")
    assert main(["data", "check", str(tmp_path / "nope"), "--task", "saliency"]) == 2


def bad_dataset(tmp_path):
    """ECSSD layout with one of each bad input beside good samples."""
    rng = np.random.default_rng(4)
    root = tmp_path / "ECSSD"
    images, masks = root / "images", root / "ground_truth_mask"
    images.mkdir(parents=True)
    masks.mkdir()

    def pair(stem, image_bytes=None, mask=None, size=(30, 40), ext=".jpg"):
        if image_bytes is None:
            cv2.imwrite(str(images / f"{stem}{ext}"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        else:
            (images / f"{stem}{ext}").write_bytes(image_bytes)
        cv2.imwrite(str(masks / f"{stem}.png"), mask if mask is not None else np.zeros(size, np.uint8))

    pair("good1")
    pair("good 2 ü")
    good_jpg = cv2.imencode(".jpg", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))[1].tobytes()
    good_png = cv2.imencode(".png", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))[1].tobytes()
    pair("zero", image_bytes=b"")
    pair("truncjpg", image_bytes=good_jpg[: len(good_jpg) // 2])
    pair("truncpng", image_bytes=good_png[: len(good_png) // 2], ext=".png")
    pair("wrongsize", mask=np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(images / "rgba.png"), rng.integers(0, 255, (30, 40, 4), dtype=np.uint8))
    cv2.imwrite(str(masks / "rgba.png"), np.zeros((30, 40), np.uint8))
    cv2.imwrite(str(images / "gray.png"), rng.integers(0, 255, (30, 40), dtype=np.uint8))
    cv2.imwrite(str(masks / "gray.png"), np.zeros((30, 40), np.uint8))
    cv2.imwrite(str(images / "deep.png"), rng.integers(0, 65535, (30, 40, 3), dtype=np.uint16))
    cv2.imwrite(str(masks / "deep.png"), np.zeros((30, 40), np.uint8))
    write_jpg(images / "nomask.jpg", rng)
    cv2.imwrite(str(masks / "noimage.png"), np.zeros((30, 40), np.uint8))
    (images / "readme.txt").write_text("not an image")
    return root


def test_check_reports_every_bad_input_and_changes_nothing(tmp_path, capsys):
    root = bad_dataset(tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "report.json"
    assert main(["data", "check", str(root), "--task", "saliency", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    problems = {p["path"].split("/")[-1]: p["problem"] for p in report["problems"]}
    assert "empty" in problems["zero.jpg"]
    assert "truncated" in problems["truncjpg.jpg"] and "truncated" in problems["truncpng.png"]
    assert "10x10" in problems["wrongsize.png"]
    assert "without a mask" in problems["nomask.jpg"] and "without an image" in problems["noimage.png"]
    assert "good1.jpg" not in problems and "good 2 ü.jpg" not in problems and "readme.txt" not in problems
    conversions = {c["path"].split("/")[-1]: c["conversion"] for c in report["conversions"]}
    assert "RGBA" in conversions["rgba.png"] and "grayscale" in conversions["gray.png"]
    assert "16-bit" in conversions["deep.png"]
    assert report["samples"] == {"ECSSD": 9} and report["ok"] is False
    assert "Traceback" not in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_converted_images_load(tmp_path):
    root = bad_dataset(tmp_path)
    for name in ("rgba.png", "gray.png", "deep.png"):
        img = read_rgb(root / "images" / name)
        assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    with pytest.raises(BadFileError, match="zero.jpg: is empty"):
        read_rgb(root / "images" / "zero.jpg")
    assert read_gray(root / "ground_truth_mask" / "good1.png").shape == (30, 40)


def test_palette_out_of_range_is_a_clear_problem(tmp_path):
    rng = np.random.default_rng(5)
    voc = make_voc(tmp_path, ["a", "b"], ["c"], rng)
    bad = np.zeros((40, 50), np.uint8)
    bad[0, 0] = 40
    write_palette(voc / "SegmentationClass" / "b.png", bad)
    report = check_dataset(tmp_path, "segmentation")
    assert [p["path"].endswith("b.png") for p in report.problems] == [True]
    assert "40" in report.problems[0]["problem"]
    source = build_source("segmentation", tmp_path, "train")
    ds = train_dataset(source, "segmentation", 32)
    batch = collate([ds[0], ds[1]])
    assert "bad" in batch and "b.png" in batch["bad"][0] and "outside 0..20" in batch["bad"][0]


def test_builtin_is_deterministic_and_not_trivial():
    a1, m1 = generate_sample("segmentation", "train", 3)
    a2, m2 = generate_sample("segmentation", "train", 3)
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2)
    assert not np.array_equal(generate_sample("segmentation", "train", 4)[0], a1)
    assert 255 in m1 and set(np.unique(m1)) <= {0, 1, 2, 3, 4, 255}
    _, sal = generate_sample("saliency", "val", 0)
    assert set(np.unique(sal)) == {0, 255} and 0.02 < (sal > 0).mean() < 0.6


@pytest.mark.parametrize("task", ["saliency", "segmentation"])
def test_make_demo_then_check_passes(tmp_path, task):
    out = tmp_path / "demo"
    assert main(["data", "make-demo", "--task", task, str(out)]) == 0
    assert check_dataset(out, task).ok
    src = build_source(task, out, "val")
    assert len(src) == BuiltinSpec().val_count
