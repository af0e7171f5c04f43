"""What real photo folders and real disks hold: EXIF-rotated photos, motion-photo JPEGs, colliding names, failed
writes, odd sizes; every surprise is said and nothing already written is lost."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from segkit.cli import main
from segkit.config import load_config
from segkit.data.io import read_gray, read_rgb

TINY = [
    "data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=1", "eval.max_images=2",
    "model.backbone=res2net50_14w_8s", "model.decoder_channels=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(module_tmp):
    from segkit.training.train import train

    out = module_tmp
    return {
        task: train(load_config(None, [f"task={task}", f"out_dir={out}", f"name={task}", *TINY])).run_dir / "best.pt"
        for task in ("saliency", "segmentation")
    }


def exif_png(path, rgb: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes())


def exif_jpeg(path, rgb: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_read_as_displayed(tmp_path, orientation):
    rgb = np.random.default_rng(orientation).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    exif_png(tmp_path / "p.png", rgb, orientation)
    with Image.open(tmp_path / "p.png") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))  # the oracle: Pillow, as viewers do
    assert np.array_equal(read_rgb(tmp_path / "p.png"), displayed)
    assert np.array_equal(read_gray(tmp_path / "p.png").shape, displayed.shape[:2])


def test_prediction_of_a_rotated_phone_photo_lines_up_with_the_photo(tmp_path, checkpoints, capsys):
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:, :20] = 255  # a bright band on the stored left edge: the displayed top edge after orientation 6
    (tmp_path / "in").mkdir()
    exif_jpeg(tmp_path / "in" / "phone.jpg", stored, 6)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoints["saliency"]), "--input", str(tmp_path / "in"),
                 "--output", str(out), "--overlay"]) == 0  # fmt: skip
    assert read_gray(out / "phone.png").shape == (64, 40)  # displayed size, not the stored 40x64
    overlay = cv2.imread(str(out / "phone_overlay.jpg"))
    assert overlay.shape[:2] == (64, 40) and overlay[:15].mean() > overlay[-15:].mean()  # the band is on top


def test_data_check_names_the_orientation_when_sizes_differ_by_a_turn(tmp_path, capsys):
    root = tmp_path / "ECSSD"
    (root / "images").mkdir(parents=True)
    (root / "ground_truth_mask").mkdir()
    exif_jpeg(root / "images" / "a.jpg", np.zeros((40, 64, 3), np.uint8), 6)
    cv2.imwrite(str(root / "ground_truth_mask" / "a.png"), np.zeros((40, 64), np.uint8))  # made for stored pixels
    assert main(["data", "check", str(root), "--task", "saliency"]) == 1
    assert "EXIF orientation 6" in capsys.readouterr().out


def test_motion_photo_jpeg_is_read_and_truncated_jpeg_is_refused(tmp_path):
    rgb = cv2.resize(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8), (120, 80))
    encoded = cv2.imencode(".jpg", rgb)[1].tobytes()
    (tmp_path / "motion.jpg").write_bytes(encoded + b"\x00\x00\x00\x18ftypmp42" + bytes(4096))  # video after EOI
    assert read_rgb(tmp_path / "motion.jpg").shape == (80, 120, 3)
    (tmp_path / "cut.jpg").write_bytes(encoded[: len(encoded) * 2 // 3])
    from segkit.data.io import BadFileError

    with pytest.raises(BadFileError, match="truncated"):
        read_rgb(tmp_path / "cut.jpg")


def test_a_file_is_judged_by_its_bytes_not_its_name(tmp_path):
    """A text file named .jpg is not an image (not "truncated"); a PNG saved as .jpg is read as the PNG it is, and
    refused as truncated when it is cut short."""
    from segkit.data.io import BadFileError

    (tmp_path / "page.jpg").write_bytes(b"<html>404 not found</html>\n")
    with pytest.raises(BadFileError, match="not a readable image") as err:
        read_rgb(tmp_path / "page.jpg")
    assert "truncated" not in str(err.value)
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8))[1].tobytes()
    (tmp_path / "png.jpg").write_bytes(png)
    assert read_rgb(tmp_path / "png.jpg").shape == (60, 90, 3)
    (tmp_path / "cutpng.jpg").write_bytes(png[: len(png) // 2])
    with pytest.raises(BadFileError, match="truncated"):
        read_rgb(tmp_path / "cutpng.jpg")


@pytest.mark.parametrize("task", ["saliency", "segmentation"])
def test_tta_on_a_one_pixel_image(tmp_path, checkpoints, task):
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoints[task]), "--input", str(tmp_path / "dot.png"),
                 "--output", str(out), "--tta"]) == 0  # fmt: skip
    assert Image.open(out / "dot.png").size == (1, 1)


def test_colliding_outputs_and_inputs_are_refused_before_writing(tmp_path, checkpoints, capsys):
    ckpt = str(checkpoints["saliency"])
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(str(folder / "a.png"), np.full((20, 20, 3), 90, np.uint8))
    assert main(["predict", "--checkpoint", ckpt, "--input", str(folder), "--output", str(tmp_path / "o")]) == 2
    clash = f"{folder / 'a.jpg'} and {folder / 'a.png'} -> {tmp_path / 'o' / 'a.png'}"  # the full paths
    assert clash in capsys.readouterr().err and not (tmp_path / "o").exists()
    (folder / "a.jpg").unlink()
    before = (folder / "a.png").read_bytes()
    code = main(["predict", "--checkpoint", ckpt, "--input", str(folder), "--output", str(folder), "--overwrite"])
    assert code == 2 and "would replace an input image" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == before


def test_predict_says_what_it_passes_over_reads_gifs_and_keeps_sub_folders(tmp_path, checkpoints, capsys):
    ckpt = str(checkpoints["saliency"])
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((20, 24, 3), np.uint8))
    Image.fromarray(np.full((18, 22, 3), 90, np.uint8)).save(folder / "b.gif")
    (folder / "notes.txt").write_text("not an image")
    cv2.imwrite(str(folder / "sub" / "a.png"), np.full((16, 16, 3), 40, np.uint8))
    out = tmp_path / "o"
    assert main(["predict", "--checkpoint", ckpt, "--input", str(folder), "--output", str(out)]) == 0
    cap = capsys.readouterr()
    assert f"not predicted: {folder / 'notes.txt'}: not an image format" in cap.err
    assert f"not predicted: {folder / 'sub'}: a sub-folder (pass --recursive" in cap.err
    assert "wrote 2 predictions" in cap.out and "2 entries not predicted" in cap.out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert cv2.imread(str(out / "b.png"), cv2.IMREAD_UNCHANGED).shape == (18, 22), "the GIF's first frame"
    deep = tmp_path / "deep"
    assert main(["predict", "--checkpoint", ckpt, "--input", str(folder), "--output", str(deep), "--recursive"]) == 0
    assert sorted(str(p.relative_to(deep)) for p in deep.rglob("*.png")) == ["a.png", "b.png", "sub/a.png"]
    assert cv2.imread(str(deep / "sub" / "a.png"), cv2.IMREAD_UNCHANGED).shape == (16, 16)


def test_a_failed_write_stops_with_the_path_and_leaves_nothing_half_written(tmp_path, checkpoints, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(inputs / f"{name}.png"), np.zeros((20, 20, 3), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    # b's temporary file name is taken by a folder: its write fails as it would on a read-only or full disk
    (out / f".b.png.tmp-{os.getpid()}").mkdir()
    code = main(["predict", "--checkpoint", str(checkpoints["saliency"]), "--input", str(inputs), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "could not write" in captured.err and "b.png" in captured.err
    assert "stopped after 1 of 3" in captured.err and "wrote" not in captured.out
    assert (out / "a.png").stat().st_size > 0 and not (out / "b.png").exists() and not (out / "c.png").exists()


def test_empty_folder_missing_json_folder_bad_workers_and_output_file(tmp_path, checkpoints, capsys):
    (tmp_path / "empty").mkdir()
    ckpt = str(checkpoints["saliency"])
    assert main(["predict", "--checkpoint", ckpt, "--input", str(tmp_path / "empty"), "--output", "x"]) == 2
    assert "holds no image files" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("")
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["predict", "--checkpoint", ckpt, "--input", str(tmp_path / "one.png"),
                 "--output", str(tmp_path / "file.txt")]) == 2  # fmt: skip
    assert "is a file" in capsys.readouterr().err
    args = ["eval", "--task", "saliency", "--pred", str(tmp_path), "--gt", str(tmp_path)]
    assert main([*args, "--json", str(tmp_path / "no" / "s.json")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main([*args, "--workers", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--workers must be a positive" in err and "Traceback" not in err


def test_corrupt_file_met_during_training_keeps_last_pt_and_logs(tmp_path):
    from segkit.data.builtin import BuiltinSpec
    from segkit.errors import SegkitError
    from segkit.tasks import get_task
    from segkit.training.train import train

    get_task("saliency").make_demo(tmp_path / "d", BuiltinSpec(train_count=4, val_count=2))
    for victim in sorted((tmp_path / "d" / "DUTS-TR" / "DUTS-TR-Image").iterdir()):
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])  # the header is whole (the pre-flight passes it), the body is not
    cfg = load_config(None, ["task=saliency", f"out_dir={tmp_path}", "name=bad", f"data.root={tmp_path / 'd'}", *TINY])
    with pytest.raises(SegkitError, match="bad training sample"):
        train(cfg)
    log = (tmp_path / "bad" / "train.log").read_text()
    assert "stopped at step 0" in log and "is truncated" in log
    assert (tmp_path / "bad" / "last.pt").is_file()


def test_zero_one_masks_are_said_in_eval_reported_by_check_and_refused_by_train(tmp_path, capsys):
    rng = np.random.default_rng(11)
    root = tmp_path / "DUTS-TR"
    images, masks = root / "DUTS-TR-Image", root / "DUTS-TR-Mask"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(6):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        mask = np.zeros((64, 64), np.uint8)
        mask[10:40, 10:40] = 1  # a 0/1 mask: empty under the standard > 128
        cv2.imwrite(str(masks / f"{i}.png"), mask)
    # eval: scored the standard way, and said with the count and an example
    code = main(["eval", "--task", "saliency", "--pred", str(masks), "--gt", str(masks)])
    err = capsys.readouterr().err
    assert code == 0 and "6 ground-truth file(s), e.g." in err and "0/1 mask" in err
    # data check: a problem per file, exit 1
    assert main(["data", "check", str(tmp_path), "--task", "saliency"]) == 1
    assert "holds only 0 and 1" in capsys.readouterr().out
    # train: refused with the fix, then trains when told how to read them
    sets = [s for t in TINY for s in ("--set", t)]
    args = ["train", "--task", "saliency", "--images", str(images), "--masks", str(masks), *sets]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 2
    assert "data.mask_values=nonzero" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "r2"), "--set", "data.mask_values=nonzero"]) == 0


def test_palette_mask_read_as_grey_is_named_but_grey_levels_are_not(tmp_path):
    from segkit.data.voc import save_label_png
    from segkit.tasks import get_task

    task = get_task("saliency")
    labels = np.zeros((16, 16), np.uint8)
    labels[4:10, 4:10] = 1  # VOC's class 1 colour, dark red, reads as grey 38
    save_label_png(tmp_path / "palette.png", labels)
    assert "palette PNG" in task.mask_surprise(task.read_mask(tmp_path / "palette.png"), tmp_path / "palette.png")
    grey = np.zeros((16, 16), np.uint8)
    grey[4:10, 4:10] = 100  # a faint grey-level object (PASCAL-S style): read as it is, nothing to say
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert task.mask_surprise(task.read_mask(tmp_path / "grey.png"), tmp_path / "grey.png") is None


def test_zero_255_masks_with_class_ids_expected(tmp_path):
    from segkit.tasks import get_task

    task = get_task("segmentation")
    binary = np.zeros((8, 8), np.uint8)
    binary[2:5, 2:5] = 255
    assert "only 0 and 255" in task.mask_surprise(binary)
    voc_like = binary.copy()
    voc_like[3, 3] = 7  # a class inside a void border: an ordinary VOC mask
    assert task.mask_surprise(voc_like) is None
    from segkit.data.masks import MaskReader

    cv2.imwrite(str(tmp_path / "m.png"), binary)
    assert set(np.unique(MaskReader(task.read_mask, "255-as-class-1")(tmp_path / "m.png"))) == {0, 1}


def test_pretrained_timm_offline_fails_at_once_without_a_run_folder(tmp_path, capsys):
    import time

    sets = [s for t in TINY for s in ("--set", t)]
    start = time.perf_counter()
    code = main(["train", "--task", "saliency", "--out", str(tmp_path / "run"), *sets,
                 "--set", "model.pretrained_backbone=timm"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - start < 30
    assert "--set model.pretrained_backbone=/path/to/weights.pth" in err and "=null" in err
    assert err.strip().count("\n") == 0 and not (tmp_path / "run").exists()


def test_best_pt_holds_weights_and_config_only(checkpoints):
    from segkit.inference.checkpoint import read_checkpoint

    best = read_checkpoint(checkpoints["saliency"])
    last = read_checkpoint(checkpoints["saliency"].with_name("last.pt"))
    assert "optimizer" not in best and {"model", "config", "task"} <= set(best)
    assert "optimizer" in last and "rng" in last
    assert checkpoints["saliency"].stat().st_size < 0.6 * checkpoints["saliency"].with_name("last.pt").stat().st_size


def test_a_demo_model_applied_to_other_images_says_what_it_is(tmp_path, checkpoints, capsys):
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((16, 16, 3), np.uint8))
    ckpt = str(checkpoints["saliency"])
    photo, out = str(tmp_path / "photo.png"), str(tmp_path / "o")
    assert main(["predict", "--checkpoint", ckpt, "--input", photo, "--output", out]) == 0
    err = capsys.readouterr().err
    assert err.count("trained only on segkit's built-in generated data") == 1 and "pretrained" in err
    assert main(["eval", "--checkpoint", ckpt, "--format", "csv"]) == 0  # its own validation data: nothing said
    assert "built-in generated data" not in capsys.readouterr().err


def test_every_training_problem_is_listed_before_step_1(tmp_path, capsys):
    """A wrong-size mask, an empty image and an unreadable mask: all three said at once, before any training,
    and `segkit data check --images/--masks` lists the same."""
    images, masks = tmp_path / "img", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        cv2.imwrite(str(masks / f"{i}.png"), (rng.random((40, 48)) > 0.5).astype(np.uint8) * 255)
    cv2.imwrite(str(masks / "1.png"), np.zeros((20, 20), np.uint8))  # wrong size
    (images / "2.jpg").write_bytes(b"")  # empty
    (masks / "3.png").write_bytes(b"not a png")  # unreadable
    out = tmp_path / "run"
    args = ["train", "--task", "saliency", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    assert main([*args, "--set", "data.val_fraction=0.25", *sum((["--set", s] for s in TINY), [])]) == 2
    err = capsys.readouterr().err
    assert "3 of the 8 training and validation pairs cannot be used; nothing was trained" in err
    assert "1.png: mask is 20x20 but its image 1.jpg is 48x40" in err
    assert "2.jpg: is empty" in err and "3.png:" in err
    assert not out.exists(), "nothing was written"
    check = ["data", "check", "--task", "saliency", "--images", str(images), "--masks", str(masks)]
    assert main(check) == 1
    report = capsys.readouterr().out
    assert "3 problems" in report and "1.png" in report and "2.jpg" in report and "3.png" in report
    for i in (1, 2, 3):
        (masks / f"{i}.png").unlink()
        (images / f"{i}.jpg").unlink()
    assert main(check) == 0 and "no problems found" in capsys.readouterr().out
    assert main(["data", "check", "--task", "segmentation", "--images", str(images), "--masks", str(masks)]) == 2
    assert "--num-classes N" in capsys.readouterr().err
