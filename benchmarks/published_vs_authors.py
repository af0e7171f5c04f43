"""The authors' networks and test pipelines against `segkit predict` on photos, with the shared reference weights:
how many pixels of the saved 8-bit maps differ, and by how much (README, "Published models").

Usage: python benchmarks/published_vs_authors.py AUTHORS_DIR
AUTHORS_DIR holds the authors' code, outside segkit, as their repositories have it: pranet/lib/{PraNet_Res2Net,
Res2Net_v1b}.py (DengPingFan/PraNet), sinet/lib/{Network_Res2Net_GRA_NCD,Res2Net_v1b,__init__}.py
(GewelsJI/SINet-V2), poolnet/networks/{poolnet_res2net,deeplab_res2net,vgg,__init__}.py (Res2Net/Res2Net-PoolNet).
Needs torchvision (their loaders' Resize) and ../shared/data/published-models.
"""

import json
import math
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

AUTHORS = Path(sys.argv[1])
REF = Path(__file__).resolve().parents[2] / "shared" / "data" / "published-models"


def make(name, shape):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith(".bias"):
        return 0.05 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 0.5 + 0.5 * torch.rand(shape, generator=g)
    return torch.randn(shape, generator=g) * math.sqrt(1 / np.prod(shape[1:]))


def state(n):
    return {k: make(k, s) for k, s, *_ in json.load(open(REF / n / "manifest.json"))["state_dict"]}


def bytescale_imsave(res):  # scipy.misc.imsave of a float map: bytescale to 0..255, +0.5, truncate
    lo, hi = res.min(), res.max()
    return (
        ((res - lo) * (255.0 / (hi - lo)) + 0.5).clip(0, 255).astype(np.uint8)
        if hi > lo
        else np.zeros(res.shape, np.uint8)
    )


def authors(name, net, photo_path):
    img = Image.open(photo_path).convert("RGB")
    with torch.no_grad():
        if name == "poolnet-res2net50":
            im = np.array(img, dtype=np.float32) / 255.0  # their loader: RGB/255, mean/std (dataset.py load_image_test)
            im = (im - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
            x = torch.from_numpy(im.transpose(2, 0, 1)[None].astype(np.float32))
            pred = np.squeeze(torch.sigmoid(net(x)).numpy())
            out = 255 * pred
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # cv2.imwrite of a float map (saturate_cast)
        tf = T.Compose([T.Resize((352, 352)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        x = tf(img).unsqueeze(0)
        res = net(x)[3]
        res = F.interpolate(res, size=(img.size[1], img.size[0]), mode="bilinear", align_corners=False)
        res = res.sigmoid().numpy().squeeze()
        res = (res - res.min()) / (res.max() - res.min() + 1e-8)
        return bytescale_imsave(res)


def build(name):
    if name == "pranet-res2net50":
        sys.path.insert(0, str(AUTHORS / "pranet"))
        import lib.Res2Net_v1b as r

        orig = r.res2net50_v1b_26w_4s
        import lib.PraNet_Res2Net as p

        p.res2net50_v1b_26w_4s = lambda pretrained=False: orig(False)
        net = p.PraNet()
        sys.path.pop(0)
        [sys.modules.pop(m) for m in list(sys.modules) if m.startswith("lib")]
    elif name == "sinet-v2-res2net50":
        sys.path.insert(0, str(AUTHORS / "sinet"))
        import lib.Network_Res2Net_GRA_NCD as s

        net = s.Network(imagenet_pretrained=False)
        sys.path.pop(0)
    else:
        sys.path.insert(0, str(AUTHORS / "poolnet"))
        from networks.poolnet_res2net import build_model

        net = build_model("res2net")
        sys.path.pop(0)
    net.load_state_dict(state(name))
    return net.eval()


tmp = Path(tempfile.mkdtemp())
photos = tmp / "photos"
photos.mkdir()
for n in ("astronaut", "coffee", "chelsea"):
    cv2.imwrite(str(photos / f"{n}.jpg"), getattr(skimage.data, n)()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
report = {}
for name in ("pranet-res2net50", "sinet-v2-res2net50", "poolnet-res2net50"):
    net = build(name)
    pth = tmp / f"{name}.pth"
    torch.save(state(name), pth)
    out = tmp / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "segkit",
            "predict",
            "--checkpoint",
            str(pth),
            "--input",
            str(photos),
            "--output",
            str(out),
            "--precision",
            "fp32",
        ],
        check=True,
    )
    diffs = []
    for p in sorted(photos.glob("*.jpg")):
        a = authors(name, net, p).astype(int)
        b = cv2.imread(str(out / (p.stem + ".png")), cv2.IMREAD_GRAYSCALE).astype(int)
        diffs.append(np.abs(a - b).ravel())
    d = np.concatenate(diffs)
    report[name] = {
        "pixels": int(d.size),
        "identical": float((d == 0).mean()),
        "within_1": float((d <= 1).mean()),
        "max_diff": int(d.max()),
    }
    print(name, report[name], flush=True)
print(json.dumps(report))
