"""ONNX export with dynamic batch, height and width, checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segkit.errors import SegkitError
from segkit.inference.engines import EngineRefused, export_onnx_graph, exportable
from segkit.inference.pipeline import inference_settings
from segkit.inference.predictor import builtin_data_notice, load_model

MAX_ABS_DIFF = 1e-3  # on logits; or MAX_REL_DIFF of the largest logit, whichever is larger
MAX_REL_DIFF = 1e-4


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = 17) -> dict:
    """Export the checkpoint's network (BatchNorm folded, eval mode) and compare onnxruntime with PyTorch on an
    input of another size; fails above ``MAX_ABS_DIFF`` (or ``MAX_REL_DIFF`` of the largest logit). Returns
    ``{"path", "max_abs_diff"}``."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise SegkitError("segkit export needs onnx and onnxruntime: pip install 'segkit[onnx]'") from None

    model = load_model(checkpoint)
    cfg = model.config
    settings = inference_settings(cfg.task, model, cfg)
    fast = exportable(model)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    multiple = settings.size_multiple
    side = 2 * multiple * max(1, 64 // (2 * multiple))
    side = max(side, -(-settings.min_side_px // multiple) * multiple)  # PoolNet-Res2Net needs 128 px
    sample = torch.randn(1, 3, side, side)
    tmp = output.with_name(f".{output.name}.tmp")
    what = _network_name(model)
    try:
        export_onnx_graph(fast, sample, tmp, what, opset)
    except EngineRefused as err:
        raise SegkitError(
            f"{err}; nothing was written. The checkpoint itself trains, evaluates and predicts as usual"
        ) from None
    proto = onnx.load(str(tmp))
    meta = {
        "segkit_task": cfg.task,
        "segkit_size_multiple": str(multiple),
        "segkit_saliency_size": str(settings.saliency_size_px),
        "segkit_saliency_resize": settings.saliency_resize,
        "segkit_minmax": str(int(settings.minmax)),
        "segkit_min_side": str(settings.min_side_px),
        "segkit_class_names": ",".join(getattr(model, "class_names", ())),
        "segkit_notice": builtin_data_notice(cfg) or "",
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    check = torch.randn(2, 3, side + multiple, side)  # another size and batch than the export sample
    with torch.no_grad():
        want = fast(check).numpy()
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": check.numpy()})[0]
    diff = float(np.abs(got - want).max())
    tolerance = max(MAX_ABS_DIFF, MAX_REL_DIFF * float(np.abs(want).max()))  # untrained nets have huge logits
    if diff > tolerance:
        tmp.unlink(missing_ok=True)
        raise SegkitError(
            f"the exported {what} differs from PyTorch by {diff:.2e} (> {tolerance:.1e}) at a second input size "
            f"({check.shape[-2]}x{check.shape[-1]}), so it would not be right at other sizes (its graph fixes a "
            "size the exporter could not follow); nothing was written"
        )
    tmp.replace(output)
    return {"path": str(output), "max_abs_diff": diff}


def _network_name(model) -> str:
    arch = getattr(model, "arch", None)
    return f"smp's {arch} network" if arch else f"the {model.task} network"
