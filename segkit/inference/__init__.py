"""Running a trained network: the pre- and post-processing pipeline (``pipeline``), loading a checkpoint, a
model folder, an ONNX model or a published network's released file (``checkpoint``, ``model_folder``,
``predictor``), writing predictions (``predict``) and exporting (``export``). Nothing here imports training or
evaluation code."""
