"""The polyp and camouflage tasks: PraNet's Dice/IoU against an oracle written from the MATLAB code, the
structure loss as the authors' call computes it, the dataset layouts, and training through the CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segkit.cli import main
from segkit.metrics.polyp import PolypMetrics


def matlab_thresholds() -> list[float]:
    """``1:-1/255:0``: MATLAB computes the first half from the start and the second from the end."""
    step = -1 / 255
    return [1 + k * step if k <= 127 else 0 - (255 - k) * step for k in range(256)]


def fmeasure_calu(smap: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[float, float]:
    """(Dice, IoU) of PraNet's eval/Fmeasure_calu.m, pixel by pixel."""
    threshold = min(threshold, 1)
    label3 = smap >= threshold
    num_rec = int(label3.sum())
    num_and = int((label3 & gt).sum())
    num_obj = int(gt.sum())
    if num_and == 0:
        return 0.0, 0.0
    fn = num_obj - num_and
    return 2 * num_and / (num_obj + num_rec), num_and / (fn + num_rec)


def mapminmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    if hi == lo:
        return x  # MATLAB's fix for a zero range: gain 1, offset ymin = 0
    return (x - lo) * (1.0 / (hi - lo))


def pranet_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """main.m: per image and threshold, then the column mean over images, then the mean over thresholds."""
    dice = np.zeros((len(pairs), 256))
    iou = np.zeros((len(pairs), 256))
    for i, (pred, gt) in enumerate(pairs):
        resmap = mapminmax(pred.astype(np.float64) / 255)
        g = gt > 128
        for t, threshold in enumerate(matlab_thresholds()):
            dice[i, t], iou[i, t] = fmeasure_calu(resmap, g, threshold)
    return float(dice.mean(0).mean()), float(iou.mean(0).mean())


def _maps(seed: int, shape=(37, 53)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, np.uint8)
    cv2.circle(gt, (int(rng.integers(10, 40)), int(rng.integers(10, 27))), int(rng.integers(5, 12)), 255, -1)
    blur = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 3) + rng.normal(0, 30, shape)
    return np.clip(blur, 0, 255).astype(np.uint8), gt


EDGE_CASES = {
    "random": [_maps(s) for s in range(4)],
    "empty ground truth": [(_maps(1)[0], np.zeros((37, 53), np.uint8))],
    "empty prediction": [(np.zeros((37, 53), np.uint8), _maps(2)[1])],
    "both empty": [(np.zeros((37, 53), np.uint8), np.zeros((37, 53), np.uint8))],
    "constant map": [(np.full((37, 53), 200, np.uint8), _maps(3)[1]), (np.full((37, 53), 7, np.uint8), _maps(3)[1])],
    "two levels": [(np.where(_maps(5)[1] > 0, 153, 20).astype(np.uint8), _maps(5)[1])],
    "full prediction": [(np.full((37, 53), 255, np.uint8), _maps(6)[1])],
}


@pytest.mark.parametrize("case", EDGE_CASES, ids=str)
def test_dice_and_iou_equal_pranets_matlab_formulas(case):
    pairs = EDGE_CASES[case]
    metrics = PolypMetrics()
    for pred, gt in pairs:
        metrics.update(pred, gt)
    scores = metrics.compute()
    want_dice, want_iou = pranet_scores(pairs)
    assert scores.mdice == pytest.approx(want_dice, abs=1e-9)
    assert scores.miou == pytest.approx(want_iou, abs=1e-9)
    if case == "both empty":
        assert scores.mdice == 0 and scores.miou == 0  # PraNet: 0 when there is no true positive


def test_structure_loss_is_what_the_authors_call_computes():
    """Their ``binary_cross_entropy_with_logits(pred, mask, reduce='none')``: PyTorch reads the legacy ``reduce``
    as true, so the BCE is the plain mean; segkit's ``structure`` loss must equal their whole expression."""
    import warnings

    from segkit.models.losses import get_loss

    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 1, 40, 40, generator=gen) * 3
    mask = (torch.rand(2, 1, 40, 40, generator=gen) > 0.6).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
        wbce = F.binary_cross_entropy_with_logits(pred, mask, reduce="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    p = torch.sigmoid(pred)
    inter = ((p * mask) * weit).sum(dim=(2, 3))
    union = ((p + mask) * weit).sum(dim=(2, 3))
    want = (wbce + 1 - (inter + 1) / (union - inter + 1)).mean()
    loss = get_loss("structure")
    assert torch.allclose(loss(pred, mask), want, rtol=1e-6)
    assert torch.allclose(loss((pred, pred * 0.5), mask), want + loss(pred * 0.5, mask), rtol=1e-6)


def _write_pairs(images, masks, n: int, image_ext: str = ".jpg") -> None:
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(images / f"{i}{image_ext}"), np.full((32, 40, 3), 100, np.uint8))
        cv2.imwrite(str(masks / f"{i}.png"), np.zeros((32, 40), np.uint8))


def test_the_camouflage_and_polyp_layouts_are_found(tmp_path):
    from segkit.data.saliency import COD, POLYP, training_sources
    from segkit.evaluation.paper import find_test_sets

    cod = tmp_path / "cod"
    _write_pairs(cod / "TrainDataset" / "Imgs", cod / "TrainDataset" / "GT", 2)
    for name in ("NC4K", "COD10K", "CAMO", "CHAMELEON"):
        _write_pairs(cod / "TestDataset" / name / "Imgs", cod / "TestDataset" / name / "GT", 1)
    tests, skipped = find_test_sets(cod, COD)
    assert [s.name for s in tests] == ["CAMO", "CHAMELEON", "COD10K", "NC4K"] and skipped == ["TrainDataset"]
    assert [s.name for s in training_sources(cod, COD)] == ["TrainDataset"]
    download = tmp_path / "downloads"
    _write_pairs(download / "COD10K-v3" / "Train" / "Image", download / "COD10K-v3" / "Train" / "GT_Object", 1)
    _write_pairs(download / "COD10K-v3" / "Test" / "Image", download / "COD10K-v3" / "Test" / "GT_Object", 1)
    _write_pairs(download / "CAMO" / "Images" / "Train", download / "CAMO" / "GT", 1)
    (download / "CAMO" / "Images" / "Test").mkdir()
    assert [s.name for s in training_sources(download, COD)] == ["COD10K-train", "CAMO-train"]
    polyp = tmp_path / "polyp"
    _write_pairs(polyp / "TrainDataset" / "image", polyp / "TrainDataset" / "mask", 2, ".png")
    for name in ("CVC-300", "Kvasir", "ETIS-LaribPolypDB", "CVC-ClinicDB", "CVC-ColonDB"):
        _write_pairs(polyp / "TestDataset" / name / "images", polyp / "TestDataset" / name / "masks", 1)
    tests, _ = find_test_sets(polyp, POLYP)
    assert [s.name for s in tests] == ["Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300"]


TINY = ["data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=2", "eval.max_images=2",
        "model.backbone=res2net50_14w_8s", "eval.checkpoint_interval_steps=1"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task,column", [("camouflage", "S"), ("polyp", "mDice")])
def test_the_new_tasks_train_predict_and_evaluate_on_their_builtin_data(task, column, tmp_path, capsys):
    run = tmp_path / "run"
    sets = [a for kv in TINY for a in ("--set", kv)]
    assert main(["train", "--task", task, "--out", str(run), *sets]) == 0
    demo = tmp_path / "demo"
    assert main(["data", "make-demo", "--task", task, str(demo)]) == 0
    assert main(["data", "check", str(demo), "--task", task]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(demo)]) == 0
    assert column in capsys.readouterr().out
    images = next(demo.glob("TestDataset/*/*"))
    assert (
        main(["predict", "--checkpoint", str(run / "best.pt"), "--input", str(images), "--output", str(tmp_path / "p")])
        == 0
    )
    maps = tmp_path / "maps"
    (maps / "Ours").mkdir(parents=True)
    (tmp_path / "p").rename(maps / "Ours" / images.parent.name)
    capsys.readouterr()
    assert main(["eval", "--task", task, "--data", str(demo), "--pred", f"Ours={maps / 'Ours'}"]) == 0
    assert column in capsys.readouterr().out


def test_step_decay_and_multiscale_sizes_follow_the_published_scripts():
    from segkit.config import load_config
    from segkit.training.optim import lr_factor
    from segkit.training.train import rescale_batch

    cfg = load_config(None, ["schedule.policy=step", "schedule.step_epochs=15", "schedule.scales=[0.75, 1, 1.25]"])
    assert cfg.schedule.scales == (0.75, 1.0, 1.25)
    steps_per_epoch = 10
    factors = [lr_factor(e * steps_per_epoch, 240, cfg.schedule, steps_per_epoch) for e in (0, 14, 15, 23)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1])  # Res2Net-PoolNet: lr / 10 after epoch 15
    images, target = torch.zeros(2, 3, 352, 352), torch.zeros(2, 1, 352, 352)
    sides = [rescale_batch(images, target, s, 352)[0].shape[-1] for s in cfg.schedule.scales]
    assert sides == [256, 352, 448]  # PraNet's int(round(352 * rate / 32) * 32)
    ids = torch.zeros(2, 352, 352, dtype=torch.long)
    assert rescale_batch(images, ids, 0.75, 352)[1].shape == (2, 256, 256)


@pytest.mark.slow
def test_frozen_batchnorm_multiscale_steps_and_value_clipping_train(tmp_path):
    from segkit.config import load_config
    from segkit.training.train import train

    # fp32 on every CPU: frozen BatchNorm keeps a random network's initial statistics, so its loss starts near
    # 1e22, and where auto trains in bf16 (measured faster on an AVX512-BF16 EPYC) one step overflowed to inf;
    # what is tested here is which weights move and how many steps are taken, not the numerics
    sets = [f"out_dir={tmp_path}", "name=r", "task=polyp", "model.freeze_bn=true", "schedule.scales=[0.5, 1]",
            "amp=false", "optim.name=adam", "optim.grad_clip_value=0.5", "schedule.policy=step",
            "schedule.step_epochs=1", *[kv for kv in TINY if not kv.startswith("schedule.max_steps")],
            "schedule.max_steps=1"]  # fmt: skip
    result = train(load_config(None, sets))
    ckpt = torch.load(result.run_dir / "last.pt", weights_only=True)
    from segkit.inference.loading import network_from_config

    _, fresh = network_from_config(ckpt["config"], 1)
    trained = ckpt["model"]
    bn = [k for k in trained if ".bn" in k or k.startswith("backbone.bn")]
    assert bn and all(torch.equal(trained[k], fresh.state_dict()[k]) for k in bn)  # statistics and affine kept
    steps = {s["step"].item() for s in ckpt["optimizer"]["state"].values()}
    assert steps == {2.0}  # one Adam step at each of the two scales


def test_the_published_loaders_augment_as_their_scripts():
    from segkit.config import load_config
    from segkit.data.transforms import published_train
    from segkit.errors import SegkitError

    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = np.zeros((90, 120), np.uint8)
    mask[:, :30] = 255
    resized = published_train("resize", 64)(image=image, mask=mask)
    assert resized["image"].shape == (64, 64, 3) and resized["mask"].shape == (64, 64)
    flips = published_train("flip", 64)
    outs = []
    for seed in range(8):
        flips.set_random_seed(seed)
        outs.append(flips(image=image, mask=mask))
    assert all(o["image"].shape == image.shape for o in outs)  # each image at its own size
    flipped = [o for o in outs if o["mask"][0, -1] == 255]
    assert flipped and len(flipped) < len(outs)  # flipped sometimes, image and mask together
    assert all(np.array_equal(o["image"], image[:, ::-1]) for o in flipped)
    with pytest.raises(SegkitError, match="data.batch_size.*must be 1 with data.augment=flip"):
        load_config(None, ["data.augment=flip", "data.batch_size=2"])


@pytest.mark.slow
def test_the_poolnet_res2net_recipe_trains_at_each_images_size(tmp_path):
    """Its authors' loader (own size, flip, batch 1), frozen BatchNorm and summed BCE, one step on the built-in
    data, with its test pipeline (each image at its own size) for the final evaluation."""
    from segkit.config import default_config_path, load_config
    from segkit.training.train import train

    recipe = default_config_path("saliency").parent / "poolnet_res2net50_duts.yaml"
    sets = [f"out_dir={tmp_path}", "name=p", "data.root=null", "model.pretrained_backbone=null",
            "model.backbone=res2net50_14w_8s", "schedule.max_steps=1", "schedule.grad_accum=2", "data.workers=0",
            "eval.max_images=2"]  # fmt: skip
    result = train(load_config(recipe, sets))
    assert (result.run_dir / "best.pt").is_file() and 0 <= result.scores.mae <= 1
