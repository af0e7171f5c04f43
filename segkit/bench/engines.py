"""``segkit bench predict --networks``: every network segkit ships on every engine, batch 1, side by side.

For each network at the input its test pipeline feeds it (the packaged configuration's size; PoolNet-Res2Net at a
photo's own 400x300), random weights with randomised BatchNorm statistics (seeded: the same on every run), one
process, the same threads:

- PyTorch eager (the network as ``torch.nn.Module``, fp32, NCHW): what a user of the authors' code runs;
- segkit's own path (``prepare_for_inference``) in fp32, and in bf16 where the CPU runs bf16 natively;
- ONNX Runtime (CPU provider, fp32) and OpenVINO (fp32, and bf16 where native) on the same graph, exported once;

each engine's outputs checked against PyTorch fp32 first (``segkit.inference.engines.agreement``), and every
latency timed interleaved: in each round every engine runs once, in turn; medians over the rounds. The last column
is segkit's fastest own path over the fastest other engine (below 1: segkit is faster). Then, on a CPU, the engine
``--engine auto`` picks for the network, made as ``segkit predict`` makes it (a checkpoint of the same weights, its
own checks and timing, measured afresh), with ``--precision auto`` and, where the CPU runs bf16 natively, with
``--precision fp32`` too, and that engine's time in the table over the fastest engine's (for ``auto``: of every
column; for fp32: of the fp32 columns; 1.00: auto picked the fastest).

On a GPU (``device="cuda"``) only PyTorch runs (``segkit.inference.engines.candidates``): the peers are PyTorch
eager in fp32 and in bf16 autocast, what a user of the authors' code runs, timed with PyTorch's defaults (TF32
convolutions); segkit's own path is its fast path (cuDNN's fused convolutions, one CUDA graph per input shape) in
fp32 and bf16, each checked against eager fp32 with TF32 off, on copies of its own (a CUDA graph keeps the
kernels it was captured with); the measured difference is reported, not used to refuse.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from segkit.accel.hardware import bf16_supported
from segkit.bench.backbone import machine_info, randomize_batchnorm
from segkit.inference import engines
from segkit.inference.pipeline import torch_net

# (name, packaged configuration, input height, width)
NETWORKS = (
    ("saliency default (demo)", "demo_saliency.yaml", 96, 96),
    ("saliency DUTS (Res2Net-50)", "duts_poolnet_style_modern_res2net50.yaml", 352, 352),
    ("DeepLabv3+ Res2Net-50 (VOC)", "voc_deeplabv3plus_res2net50_os16.yaml", 384, 512),
    ("PoolNet-Res2Net", "poolnet_res2net50_duts.yaml", 300, 400),
    ("PraNet", "pranet_polyp.yaml", 352, 352),
    ("SINet-V2", "sinet_v2_cod.yaml", 352, 352),
)


@dataclass
class NetworkRow:
    network: str
    input: str
    ms: dict[str, float] = field(default_factory=dict)  # engine column -> median ms
    agreement: dict[str, str] = field(default_factory=dict)  # engine column -> the measured difference
    left_out: dict[str, str] = field(default_factory=dict)  # engine column -> why it has no figure
    segkit_over_fastest_peer: float | None = None
    auto: dict[str, str] = field(default_factory=dict)  # --precision -> the column of the engine auto picks
    auto_reason: dict[str, str] = field(default_factory=dict)  # --precision -> auto's own words (its timings)
    auto_over_fastest: dict[str, float] = field(default_factory=dict)  # that column's time over the fastest's


def _network(config_name: str) -> tuple[torch.nn.Module, str]:
    """The packaged configuration's network, with random weights (no pretrained backbone is read)."""
    net, cfg = _network_and_config(config_name)
    return net, cfg.task


def _network_and_config(config_name: str):
    from dataclasses import replace

    from segkit.config import load_config
    from segkit.models.factory import model_from_config
    from segkit.tasks import get_task

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / config_name))
    cfg = replace(cfg, model=replace(cfg.model, pretrained_backbone=None))
    task = get_task(cfg.task)
    with torch.random.fork_rng():  # the same weights run after run; the caller's random state is left alone
        torch.manual_seed(0)
        net = model_from_config(task, cfg.model, 21 if task.labels else 1).eval()
    randomize_batchnorm(net)
    return net, cfg


def _inputs(h: int, w: int, device: str = "cpu") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The timing input and two check inputs, the same run after run."""
    gen = torch.Generator().manual_seed(1)
    x, *checks = (torch.randn(1, 3, h, w, generator=gen).to(device) for _ in range(3))
    return x, checks


def auto_pick(net: torch.nn.Module, cfg, folder: Path, precision: str = "auto") -> tuple[str, str]:
    """The engine and precision ``--engine auto --precision PRECISION`` picks for ``net`` on this machine, made as
    ``segkit predict`` makes it (its own checks on the built-in validation images and its own interleaved timing
    at its own input), measured afresh (a decisions cache of its own in ``folder``): (table column, reason)."""
    import os

    from segkit.config import to_dict
    from segkit.inference.predictor import Predictor
    from segkit.training.checkpoint import atomic_save

    ckpt = folder / "net.pt"
    atomic_save(
        {"model": net.state_dict(), "config": to_dict(cfg), "num_classes": int(getattr(net, "num_classes", 1))}, ckpt
    )
    saved = {k: os.environ.pop(k, None) for k in (engines.ENGINE_ENV, "SEGKIT_AUTO_PRECISION", "SEGKIT_CACHE_DIR")}
    os.environ["SEGKIT_CACHE_DIR"] = str(folder / f"cache-{precision}")
    try:
        predictor = Predictor(ckpt, device="cpu", precision=precision)
        predictor.predict(np.zeros((375, 500, 3), np.uint8))  # the choice is made on the first image (a photo's size)
    finally:
        os.environ.pop("SEGKIT_CACHE_DIR")
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    choice = predictor.engine
    name = "segkit" if choice.name == "torch" else choice.name
    return f"{name} {choice.precision}", "; ".join([choice.reason, *choice.notes])


def bench_network(name: str, config_name: str, h: int, w: int, rounds: int, device: str = "cpu") -> NetworkRow:
    if device != "cpu":
        return bench_network_on_gpu(name, config_name, h, w, rounds, device)
    from segkit.models import prepare_for_inference

    net, cfg = _network_and_config(config_name)
    row = NetworkRow(name, f"{w}x{h}")
    x, checks = _inputs(h, w)
    with torch.inference_mode():
        nets = {"torch eager fp32": net, "segkit fp32": torch_net(prepare_for_inference(net), "cpu")}
        if bf16_supported("cpu"):
            nets["segkit bf16"] = torch_net(prepare_for_inference(net, precision="bf16"), "cpu")
    reference = nets["segkit fp32"]
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "net.onnx"
        try:
            engines.export_onnx_graph(engines.exportable(net), x, graph, name)
        except engines.EngineRefused as err:
            graph = None
            row.left_out["onnx"] = str(err)
        peers = [("onnxruntime fp32", "onnxruntime", "fp32"), ("openvino fp32", "openvino", "fp32")]
        if bf16_supported("cpu"):
            peers.append(("openvino bf16", "openvino", "bf16"))
        for column, engine, precision in peers if graph else ():
            if not engines.installed(engine):
                row.left_out[column] = f"not installed ({engines.INSTALL[engine]})"
                continue
            try:
                peer = engines.engine_net(engine, graph, precision)
                ok, words = engines.agreement(reference, peer, checks, precision)
            except Exception as err:  # noqa: BLE001 - each engine raises its own types, as auto's check takes them
                row.left_out[column] = f"it failed ({str(err).strip().splitlines()[-1][:160]})"
                continue
            row.agreement[column] = words
            if ok:
                nets[column] = peer
            else:
                row.left_out[column] = f"disagrees: {words}"
        row.ms = engines.time_nets(nets, x, rounds)
        for precision in ("auto", "fp32") if bf16_supported("cpu") else ("auto",):
            row.auto[precision], row.auto_reason[precision] = auto_pick(net, cfg, Path(tmp), precision)
    own = min(v for k, v in row.ms.items() if k.startswith("segkit"))
    others = [v for k, v in row.ms.items() if not k.startswith("segkit") and k != "torch eager fp32"]
    row.segkit_over_fastest_peer = own / min(others) if others else None
    engines_ms = {k: v for k, v in row.ms.items() if k != "torch eager fp32"}
    for precision, column in row.auto.items():
        among = {k: v for k, v in engines_ms.items() if precision == "auto" or k.endswith(precision)}
        if column in among:
            row.auto_over_fastest[precision] = among[column] / min(among.values())
    return row


def bench_network_on_gpu(name: str, config_name: str, h: int, w: int, rounds: int, device: str) -> NetworkRow:
    """The GPU row: PyTorch eager fp32 and bf16 autocast against segkit's CUDA-graph fast path in both."""
    from segkit.models import prepare_for_inference

    net, _ = _network(config_name)
    net = net.to(device)
    row = NetworkRow(name, f"{w}x{h}")
    x, checks = _inputs(h, w, device)
    with torch.inference_mode():
        nets = {
            "torch eager fp32": torch_net(net, device),
            "torch eager bf16": torch_net(net, device, bf16=True),
            "segkit fp32": torch_net(prepare_for_inference(net), device),
            "segkit bf16": torch_net(prepare_for_inference(net, precision="bf16"), device),
        }
    row.agreement = _agreement_in_true_fp32(net, checks, device)
    row.ms = engines.time_nets(nets, x, rounds)
    own = min(v for k, v in row.ms.items() if k.startswith("segkit"))
    row.segkit_over_fastest_peer = own / min(v for k, v in row.ms.items() if k.startswith("torch eager"))
    return row


def _agreement_in_true_fp32(net: torch.nn.Module, checks: list[torch.Tensor], device: str) -> dict[str, str]:
    """Eager bf16 and segkit's fp32 and bf16 paths (new copies) against eager fp32, with TF32 off."""
    from segkit.models import prepare_for_inference

    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.inference_mode():
            candidates = {
                "torch eager bf16": torch_net(net, device, bf16=True),
                "segkit fp32": torch_net(prepare_for_inference(net), device),
                "segkit bf16": torch_net(prepare_for_inference(net, precision="bf16"), device),
            }
        reference = torch_net(net, device)
        return {c: engines.agreement(reference, n, checks, c.split()[-1])[1] for c, n in candidates.items()}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def run_networks_bench(rounds: int = 5, only: list[str] | None = None, progress=print, device: str = "cpu") -> dict:
    machine = machine_info(torch.device(device))  # first: its bf16 measurement is kept in the user's cache
    rows = []
    for name, config_name, h, w in NETWORKS:
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        progress(f"timing {name} at {w}x{h} on {device} ...")
        try:
            rows.append(bench_network(name, config_name, h, w, rounds, device))
        except RuntimeError as err:  # a network that fails on this device: said in its row, the others still run
            if device == "cpu":
                raise
            rows.append(NetworkRow(name, f"{w}x{h}", left_out={"all": f"failed: {str(err).splitlines()[0]}"}))
    return {"machine": machine, "rounds": rounds, "rows": [r.__dict__ for r in rows]}


def format_networks(result: dict) -> str:
    m = result["machine"]
    columns = ["torch eager fp32", "torch eager bf16", "segkit fp32", "segkit bf16"]
    columns += ["onnxruntime fp32", "openvino fp32", "openvino bf16"]
    columns = [c for c in columns if any(c in r["ms"] for r in result["rows"])]
    picks = [p for p in ("auto", "fp32") if any(p in r.get("auto", {}) for r in result["rows"])]
    head = f"{'network':<28} {'input':>8} " + " ".join(f"{c:>16}" for c in columns) + f" {'segkit/fastest peer':>20}"
    head += "".join(f" {'--engine auto --precision ' + p + ', /fastest':>40}" for p in picks)
    where = f"{m['gpu']} (host {m['cpu_line']})" if "gpu" in m else f"{m['cpu_model']} ({m['bf16_feature']})"
    lines = [
        f"segkit bench predict --networks on {where}, {m['date']}, torch "
        f"{m['torch']}, {m['threads']} threads; batch 1, median ms of {result['rounds']} interleaved rounds",
        head,
        "-" * len(head),
    ]
    for r in result["rows"]:
        cells = " ".join(f"{r['ms'][c]:>16.1f}" if c in r["ms"] else f"{'-':>16}" for c in columns)
        ratio = f"{r['segkit_over_fastest_peer']:>20.2f}" if r["segkit_over_fastest_peer"] else f"{'-':>20}"
        picked = ""
        for p in picks:
            over = r.get("auto_over_fastest", {}).get(p)
            picked += f" {r.get('auto', {}).get(p, '-'):>33} " + (f"{over:>6.2f}" if over else f"{'-':>6}")
        lines.append(f"{r['network']:<28} {r['input']:>8} {cells} {ratio}{picked}")
    notes = [f"{r['network']}: {c} {why}" for r in result["rows"] for c, why in r["left_out"].items()]
    return "\n".join(lines + (["left out: " + "; ".join(notes)] if notes else []))
