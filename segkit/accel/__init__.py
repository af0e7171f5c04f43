"""What makes a trained network faster without changing what it computes: BatchNorm folding and the inference
blocks (``fast``), oneDNN's and cuDNN's fused convolutions (``onednn``), compilation and CUDA graphs, bf16 autocast
(``precision``) and what the hardware runs natively (``hardware``).

Nothing here knows a segkit network: a network's own block provides its inference form (``inference_form``, as
``segkit.models.res2net.Bottle2neck`` does), so this layer sits below ``segkit.models``.
"""

from segkit.accel.fast import prepare_for_inference

__all__ = ["prepare_for_inference"]
