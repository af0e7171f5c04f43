"""Running a trained network: the pre- and post-processing pipeline (``pipeline``), reading checkpoints and
published networks' released files (``checkpoint``), loading any of them, a model folder or ``hf://`` (``loading``),
the ``Predictor`` (``predictor``), writing predictions (``predict``), writing a model folder (``model_folder``) and
ONNX export (``export``). Nothing here imports training or evaluation code."""
