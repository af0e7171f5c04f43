"""What makes a trained network faster without changing what it computes: BatchNorm folding and the inference
blocks (``fast``), oneDNN's and cuDNN's fused convolutions (``onednn``), compilation and CUDA graphs, bf16 autocast
(``precision``) and what the hardware runs natively (``hardware``).

Nothing here knows a segkit network: a network's own block provides its inference form (``inference_form``, as
``segkit.models.res2net.Bottle2neck`` does), so this layer sits below ``segkit.models``.
"""

__all__ = ["prepare_for_inference"]


def __getattr__(name: str):
    """``prepare_for_inference`` imported on first use: ``segkit.accel.memory`` is also read by commands that never
    load torch (``segkit eval`` on saved maps)."""
    if name == "prepare_for_inference":
        from segkit.accel.fast import prepare_for_inference

        return prepare_for_inference
    raise AttributeError(f"module 'segkit.accel' has no attribute {name!r}")
