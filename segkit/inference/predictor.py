"""The Python API for notebooks and scripts: ``load_model`` and ``Predictor`` (PyTorch checkpoint or ONNX).

Prediction needs models and inference only: nothing here imports training or evaluation code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segkit.accel.fast import onednn_fuses
from segkit.accel.hardware import bf16_feature, resolve_precision
from segkit.config import ExperimentConfig
from segkit.errors import SegkitError
from segkit.inference.loading import load_model
from segkit.inference.pipeline import InferenceSettings, Net, inference_settings, predict_probs, torch_net
from segkit.models import prepare_for_inference
from segkit.tasks import get_task


def builtin_data_notice(config: ExperimentConfig) -> str | None:
    """A note for models trained only on segkit's built-in generated data, which is what the default run makes:
    said when such a model meets other images. None for models trained on a dataset or folders."""
    if config.data.root is not None or config.data.images is not None:
        return None
    return (
        "note: this model was trained only on segkit's built-in generated data (the demo run): on real photos "
        "it tends to mark any photographic texture as the object. For real use, train with an ImageNet-pretrained "
        "backbone on real data (README, 'Reproducing the paper')"
    )


class OnnxNet:
    """A segkit-exported ONNX model in an onnxruntime session as a ``Net`` (float32 batch in, logits out), with
    the pre- and post-processing settings its metadata holds."""

    def __init__(self, path: str | Path) -> None:
        from segkit.inference.engines import OrtNet

        path = Path(path)
        if not path.is_file():
            raise SegkitError(f"ONNX model '{path}' does not exist")
        try:
            self.run = OrtNet(path)
        except SegkitError:
            raise SegkitError("running an ONNX model needs onnxruntime: pip install 'segkit[onnx]'") from None
        except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph types
            raise SegkitError(f"ONNX model '{path}' could not be loaded: {str(err)[:300]}") from None
        meta = self.run.session.get_modelmeta().custom_metadata_map
        if "segkit_task" not in meta:
            raise SegkitError(f"ONNX model '{path}' was not exported by segkit (no segkit_task metadata)")
        self.task = meta["segkit_task"]
        self.size_multiple = int(meta.get("segkit_size_multiple", 32))
        self.saliency_size_px = int(meta.get("segkit_saliency_size", 320))
        self.saliency_resize = meta.get("segkit_saliency_resize", "square")
        self.minmax = meta.get("segkit_minmax", "0") == "1"
        self.min_side_px = int(meta.get("segkit_min_side", 32))
        names = meta.get("segkit_class_names", "")
        self.class_names = tuple(names.split(",")) if names else ()
        self.notice = meta.get("segkit_notice") or None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


# --compile auto compiles a CPU job of at least this many images where the fast path runs without oneDNN's fused
# convolutions: there compiling saves tens of ms per image against tens of seconds for the first compilation.
# Where the fused convolutions run (``onednn_fuses``) the eager fast path measured as fast as compiled or faster,
# and on a GPU the CUDA-graph fast path runs single images faster than compiled code, so auto does not compile
# there (benchmarks/RESULTS.md, "Decisions that rest on a measurement").
COMPILE_MIN_IMAGES = 1000
COMPILE_NOTE = "compiling pays for itself after about 1000 images (measured)"


def compile_decision(choice: bool | str, job_images: int | None, device: str = "cpu") -> tuple[bool, str]:
    """(compile or not, why) for ``choice`` True/False/"on"/"off"/"auto" and a job of ``job_images`` images run
    on ``device``."""
    if choice in (True, "on"):
        return True, "asked"
    if choice in (False, "off", None):
        return False, "asked" if choice == "off" else ""
    if choice != "auto":
        raise SegkitError(f"compile must be auto, on or off, got {choice!r}")
    if device.startswith("cuda"):
        return False, "auto: on a GPU the CUDA-graph path runs single images faster"
    if onednn_fuses(device):
        return False, "auto: on this CPU the fused eager path (oneDNN) measured as fast as compiled"
    if job_images is None:
        return False, "auto: job size unknown"
    if job_images >= COMPILE_MIN_IMAGES:
        return True, f"auto: {job_images} images >= {COMPILE_MIN_IMAGES}; {COMPILE_NOTE}"
    return False, f"auto: {job_images} images < {COMPILE_MIN_IMAGES}; {COMPILE_NOTE}"


def use_persistent_compile_cache() -> None:
    """Keep inductor's compiled code in ~/.cache/segkit/inductor (unless TORCHINDUCTOR_CACHE_DIR is set), so a
    later run loads it instead of compiling again; the default under /tmp is lost on reboot."""
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch writes its default into the variable on first use, so "unset" and "torch's default" are one case
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is not None and os.path.abspath(current) != os.path.abspath(default_cache_dir()):
        return  # the user's choice
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segkit" / "inductor"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable home: inductor's own default stays
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)


class Predictor:
    """``Predictor(path).predict(image)`` -> the mask (saliency grey map uint8 or class ids) at the image's size.

    ``path`` is a segkit checkpoint (.pt), a model folder (or ``hf://OWNER/NAME``) or an exported ONNX model
    (.onnx); all share the same pre- and
    post-processing. ``image`` is an RGB uint8 array (H, W, 3). ``task`` is the task's name; ``notice`` is a
    line to show users when the model was trained only on the built-in demo data (else None).

    ``precision``: ``"auto"`` (bf16 where the device runs it natively and faster: a CUDA GPU with bf16, a CPU
    with AVX512-BF16 or AMX where bf16 measures faster, see ``segkit.accel.hardware.bf16_pays``; fp32 elsewhere),
    ``"fp32"`` or ``"bf16"``; ``self.precision`` says which runs. ``compile``: ``torch.compile`` the network
    (True/"on"), or not (False/"off"), or "auto": a CPU job when ``job_images`` (the number of images the caller
    will run) reaches ``COMPILE_MIN_IMAGES`` and the CPU lacks oneDNN's fused convolutions (``compile_decision``).
    ONNX models run in fp32, uncompiled.

    ``engine``: ``"auto"`` (the fastest engine that computes what PyTorch does, measured once per machine and
    network, ``segkit.inference.engines``), ``"torch"`` (segkit's own path), ``"onnxruntime"`` or ``"openvino"``;
    ``self.engine`` says which runs and why. A compiled network runs on PyTorch.
    """

    def __init__(
        self,
        path: str | Path,
        tta: bool = False,
        device: str | None = None,
        output_stride: int | None = None,
        precision: str = "auto",
        compile: bool | str = False,
        job_images: int | None = None,
        engine: str = "auto",
    ) -> None:
        from segkit.inference.engines import ENGINES, EngineChoice

        if engine not in ENGINES:
            raise SegkitError(f"unknown engine '{engine}'; valid: {', '.join(ENGINES)}")
        source = path  # hf://OWNER/NAME stays a string
        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.compiled = False
        self.compile_reason = ""
        self.config: ExperimentConfig | None = None  # a checkpoint's experiment config (None for ONNX)
        self.engine_request, self.source = engine, source
        self.engine: EngineChoice | None = None
        if path.suffix.lower() == ".onnx":
            onnx = OnnxNet(path)
            self.task, self.net, self.class_names = get_task(onnx.task).name, onnx, onnx.class_names
            self.settings = InferenceSettings(
                onnx.task,
                onnx.size_multiple,
                onnx.saliency_size_px,
                tta,
                device="cpu",
                saliency_resize=onnx.saliency_resize,
                minmax=onnx.minmax,
                min_side_px=onnx.min_side_px,
            )
            self.notice, self.precision = onnx.notice, "fp32"
            self.engine = EngineChoice("onnxruntime", "fp32", "an ONNX model")
            if engine == "openvino":
                from segkit.inference.engines import OpenVinoNet

                self.net, self.engine = OpenVinoNet(path), EngineChoice("openvino", "fp32", "asked")
            elif engine == "torch":
                raise SegkitError(f"'{path}' is an ONNX model: it runs with --engine auto, onnxruntime or openvino")
            return
        self.precision = resolve_precision(precision, device)
        model = load_model(source, output_stride=output_stride, device=device)
        cfg: ExperimentConfig = model.config
        self.config, self.num_classes = cfg, model.num_classes
        self.task, self.class_names = cfg.task, model.class_names
        self.notice = builtin_data_notice(cfg)
        self._model = model  # the fast path is made from it once the compile choice is known (set_compile)
        self._fast: dict[bool, nn.Module] = {}  # compiled or not -> that form of the fast path, made once each
        self._engine_net: Net | None = None  # the engine auto or --engine chose, once chosen
        self.settings = inference_settings(cfg.task, model, cfg, tta=tta, device=device)
        self.set_compile(compile, job_images)

    def set_compile(self, compile: bool | str, job_images: int | None = None) -> None:
        """Compile the network or not (see the class docstring), e.g. once a job's size is known."""
        if self.config is None:  # ONNX: onnxruntime runs it as exported
            return
        self.compiled, self.compile_reason = compile_decision(compile, job_images, self.settings.device)
        if self.compiled:
            use_persistent_compile_cache()
        # compiled or not decides the fast path's form: oneDNN's fused convolutions eagerly, inductor's own fusion
        # when compiled; on a GPU, uncompiled, each input shape is replayed as a CUDA graph

        def fast_net() -> Net:
            if self.compiled not in self._fast:  # a second call with the same choice (eval) reuses it
                self._fast[self.compiled] = prepare_for_inference(
                    self._model, precision=self.precision, compile=self.compiled
                )
            return torch_net(self._fast[self.compiled], self.settings.device)

        if self.compiled:  # inductor's code is PyTorch's
            from segkit.inference.engines import EngineChoice

            self.net: Net = fast_net()
            self.engine = EngineChoice("torch", self.precision, "the network is compiled")
            return
        if self._engine_net is None:  # made once: segkit's own path only when it runs or is timed
            from segkit.inference.engines import select_engine

            self._engine_net, self.engine = select_engine(self.engine_request, self._engine_job(fast_net))
        self.net = self._engine_net

    def _engine_job(self, own):
        """What choosing an engine needs (``segkit.inference.engines.EngineJob``); ``own`` makes segkit's own path.
        Each part is made only when a check, a timing or an export needs it."""
        from segkit.inference.engines import EngineJob, check_inputs, exportable
        from segkit.inference.pipeline import network_input

        def reference() -> Net:
            if self.precision == "fp32":
                return job.torch_net
            return torch_net(prepare_for_inference(self._model), self.settings.device)

        usual = np.zeros((375, 500, 3), np.uint8)  # a photo's usual size (VOC's, DUTS'); square-resizing nets: theirs
        job = EngineJob(
            model=self._model,
            make_torch=own,
            make_body=lambda: exportable(self._model),
            make_reference=reference,
            make_check=lambda: check_inputs(get_task(self.task), lambda image: network_input(image, self.settings)),
            timing_input=network_input(usual, self.settings),
            source=self.source,
            device=self.settings.device,
            precision=self.precision,
            what=f"the {self.task} network ({type(self._model).__name__})",
        )
        return job

    def describe(self) -> str:
        """One line: the engine and precision that run and why, and whether the network is compiled."""
        how = f"precision {self.precision} ({bf16_feature(self.settings.device)})"
        if self.engine is not None:
            how = f"engine {self.engine.name} ({self.engine.reason}), " + how
        if self.compile_reason:
            how += ", " + ("compiled" if self.compiled else "not compiled") + f" ({self.compile_reason})"
        return how

    def engine_notes(self) -> list[str]:
        """The engines auto left out, and why (one line each)."""
        return list(self.engine.notes) if self.engine else []

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """Probabilities at the image's size: (H, W) for saliency, (C, H, W) for segmentation."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SegkitError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        return predict_probs(self.net, image, self.settings)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """The saved form of the prediction: a uint8 grey map (saliency) or class ids (segmentation)."""
        return get_task(self.task).to_mask(self.predict_probs(image))
