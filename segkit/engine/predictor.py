"""The Python API for notebooks and scripts: ``load_model`` and ``Predictor`` (PyTorch checkpoint or ONNX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segkit.engine.checkpoint import read_checkpoint
from segkit.engine.config import ExperimentConfig, from_dict
from segkit.engine.inference import InferenceSettings, Net, predict_probs, to_mask
from segkit.errors import SegkitError


def load_model(checkpoint: str | Path, output_stride: int | None = None, device: str = "cpu") -> nn.Module:
    """Rebuild the network of a segkit checkpoint (its config is inside) and load its weights; eval mode.

    ``output_stride`` may differ from training (a DeepLab model trained at 16 evaluated at 8).
    """
    from segkit.engine.train import build_model

    ckpt = read_checkpoint(checkpoint)
    config = from_dict(ExperimentConfig, ckpt["config"])
    if output_stride is not None:
        model_cfg = {**ckpt["config"]["model"], "output_stride": output_stride}
        config = from_dict(ExperimentConfig, {**ckpt["config"], "model": model_cfg})
    model = build_model(config, int(ckpt.get("num_classes", 1)))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise SegkitError(f"checkpoint '{checkpoint}' does not match its own config: {str(err)[:500]}") from None
    model.config = config
    model.class_names = tuple(ckpt.get("class_names", ()))
    return model.to(device).eval()


class OnnxNet:
    """An onnxruntime session as a ``Net`` (float32 batch in, logits out)."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SegkitError(f"ONNX model '{path}' does not exist")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph types
            raise SegkitError(f"ONNX model '{path}' could not be loaded: {str(err)[:300]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "segkit_task" not in meta:
            raise SegkitError(f"ONNX model '{path}' was not exported by segkit (no segkit_task metadata)")
        self.task = meta["segkit_task"]
        self.size_multiple = int(meta.get("segkit_size_multiple", 32))
        self.saliency_size_px = int(meta.get("segkit_saliency_size", 320))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


class Predictor:
    """``Predictor(path).predict(image)`` -> the mask (saliency grey map uint8 or class ids) at the image's size.

    ``path`` is a segkit checkpoint (.pt) or an exported ONNX model (.onnx); both share the same pre- and
    post-processing. ``image`` is an RGB uint8 array (H, W, 3).
    """

    def __init__(
        self, path: str | Path, tta: bool = False, device: str | None = None, output_stride: int | None = None
    ) -> None:
        from segkit.engine.evaluate import make_net
        from segkit.models import prepare_for_inference

        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if path.suffix.lower() == ".onnx":
            onnx = OnnxNet(path)
            self.task, self.net = onnx.task, onnx
            self.settings = InferenceSettings(onnx.task, onnx.size_multiple, onnx.saliency_size_px, tta, device="cpu")
            self.class_names: tuple[str, ...] = ()
            return
        model = load_model(path, output_stride=output_stride, device=device)
        cfg: ExperimentConfig = model.config
        self.task, self.class_names = cfg.task, model.class_names
        self.net: Net = make_net(prepare_for_inference(model), device)
        self.settings = InferenceSettings(
            task=cfg.task,
            size_multiple=max(16, model.output_stride) if cfg.task == "segmentation" else 32,
            saliency_size_px=cfg.data.eval_size or cfg.data.image_size,
            tta=tta,
            device=device,
        )

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """Probabilities at the image's size: (H, W) for saliency, (C, H, W) for segmentation."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SegkitError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        return predict_probs(self.net, image, self.settings)

    def predict(self, image: np.ndarray) -> np.ndarray:
        return to_mask(self.predict_probs(image), self.task)
