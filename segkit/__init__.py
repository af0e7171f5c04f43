"""segkit: semantic segmentation and salient object detection on the Res2Net backbone.

``segkit.load_model(checkpoint)`` and ``segkit.Predictor(checkpoint_or_onnx)`` are imported on first use, so
that ``import segkit`` (and the command line) starts without loading PyTorch.
"""

from segkit.version import __version__ as __version__

__all__ = ["Predictor", "load_model"]


def __getattr__(name: str):
    if name in ("Predictor", "load_model"):
        from segkit.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'segkit' has no attribute '{name}'")
