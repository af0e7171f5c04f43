"""The engines a network can run on: segkit's own PyTorch path, ONNX Runtime, or OpenVINO, chosen and checked.

``--engine auto`` (the default) runs a network on the fastest engine available for the device, decided once per
machine, network (its weights' hash) and precision by timing each candidate at the network's input size, then kept
in the decisions cache (``segkit.accel.decisions``), so the same input gives the same output run after run. An
engine is a candidate only once its outputs were checked against PyTorch for that network on the built-in
validation split of the network's task (``agreement``): fp32 logits within ``FP32_RELATIVE`` of the largest logit,
bf16 masks at least ``BF16_MASK_AGREEMENT`` identical. An engine that disagrees, cannot export the network or is not
installed is left out with one line saying why; asked for by name, it is refused with the same words.

The ONNX graph both engines read is exported once and cached beside the model (``.segkit-engines/`` in the model's
folder; segkit's cache folder where that is not writable), named by the weights' hash: a second run starts at once,
and changed weights export anew (the file of the old weights is removed). ``SEGKIT_ENGINE=torch|onnxruntime|openvino``
sets what ``auto`` means without measuring (the test suite runs so).

On a GPU only PyTorch runs (segkit's fast path: cuDNN's fused convolutions, CUDA graphs); TensorRT and ONNX
Runtime's CUDA provider are not wired in, since the GPU lent here has neither and cannot be given them, so they could
not be measured or checked (benchmarks/RESULTS.md, "Engines on the GPU").
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segkit.accel import decisions
from segkit.accel.hardware import bf16_supported
from segkit.accel.timing import time_interleaved
from segkit.errors import SegkitError
from segkit.version import __version__

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
ENGINE_ENV = "SEGKIT_ENGINE"
FP32_RELATIVE = 1e-4  # fp32 engines: max |logit difference| <= this x the largest |logit| on the check images
BF16_MASK_AGREEMENT = 0.995  # bf16 engines: at least this fraction of mask pixels identical to PyTorch fp32's
CHECK_IMAGES = 4  # images of the built-in validation split the agreement check runs
TIMING_ROUNDS = 5  # interleaved rounds of the auto decision (after one untimed call of each candidate)
INSTALL = {"onnxruntime": "pip install 'segkit[onnx]'", "openvino": "pip install 'segkit[openvino]'"}
OPENVINO_SHAPES = 16  # OpenVINO networks compiled for a static input shape, kept per shape (the last 16)

Net = Callable[[torch.Tensor], torch.Tensor]


class EngineRefused(SegkitError):
    """An engine that cannot run this network: not installed, cannot export it, or disagrees with PyTorch."""


@dataclass
class EngineChoice:
    name: str  # torch, onnxruntime or openvino
    precision: str  # fp32 or bf16
    reason: str  # why, in words
    notes: list[str] = field(default_factory=list)  # engines left out, and why (one line each)


# ------------------------------------------------------------------------------------------------ export


def weights_hash(model: nn.Module) -> str:
    """A digest of the network's class, weights and buffers (names, shapes, dtypes, bytes) and of the segkit and
    torch versions that export it: what an exported graph depends on."""
    digest = hashlib.sha256(f"{type(model).__qualname__}|{__version__}|{torch.__version__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:20]


def exportable(model: nn.Module) -> nn.Module:
    """The network as an exporter sees it: the fast path's plain modules (BatchNorm folded, eval mode), without
    oneDNN's fused kernels, CUDA graphs or an input cast."""
    from segkit.models import prepare_for_inference

    return prepare_for_inference(model, cuda_graphs=False, onednn=False).body


def export_onnx_graph(body: nn.Module, sample: torch.Tensor, path: Path, what: str, opset: int = 17) -> None:
    """``body`` (eval mode, plain modules) as an ONNX graph with dynamic batch, height and width, written to
    ``path`` atomically; an exporter failure is an ``EngineRefused`` naming the network."""
    import warnings

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on constant folding are not the user's business
            torch.onnx.export(
                body,
                (sample,),
                str(tmp),
                input_names=["image"],
                output_names=["logits"],
                opset_version=opset,
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                },
                dynamo=False,
            )
    except Exception as err:  # noqa: BLE001 - the exporter's own error types vary by operator
        tmp.unlink(missing_ok=True)
        raise EngineRefused(
            f"{what} cannot be exported to ONNX with dynamic height and width by PyTorch's exporter "
            f"({_first_line(err)})"
        ) from None
    os.replace(tmp, path)


def graph_path(source: str | Path | None, digest: str) -> Path:
    """Where the exported graph of weights ``digest`` is kept: ``.segkit-engines/`` beside the model file (or
    inside a model folder) when that can be written, else segkit's cache folder."""
    name = f"{digest}.onnx"
    if source is not None and not str(source).startswith("hf://"):
        source = Path(source)
        folder = (source if source.is_dir() else source.parent) / ".segkit-engines"
        stem = "model" if source.is_dir() else source.stem
        try:
            folder.mkdir(exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder / f"{stem}-{name}"
        except OSError:
            pass
    folder = decisions.cache_dir() / "engines"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def cached_graph(body: nn.Module, sample: torch.Tensor, source, digest: str, what: str) -> tuple[Path, bool]:
    """(path of the ONNX graph for these weights, whether it was exported now). Exports once; graphs of other
    weights of the same model file are removed, so a retrained checkpoint never runs a stale graph."""
    path = graph_path(source, digest)
    if path.is_file():
        return path, False
    export_onnx_graph(body, sample, path, what)
    if "-" in path.stem:  # beside a model file: <stem>-<digest>.onnx; drop the other digests of that stem
        stem = path.stem.rsplit("-", 1)[0]
        for old in path.parent.glob(f"{stem}-*.onnx"):
            if old != path and old.stem.rsplit("-", 1)[0] == stem:
                old.unlink(missing_ok=True)
    return path, True


# ------------------------------------------------------------------------------------------------ the engines


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:300] if text else type(err).__name__).strip()


def _need(engine: str):
    try:
        if engine == "onnxruntime":
            import onnxruntime

            return onnxruntime
        import openvino

        return openvino
    except ImportError:
        raise EngineRefused(f"--engine {engine} needs the {engine} package: {INSTALL[engine]}") from None


def installed(engine: str) -> bool:
    try:
        _need(engine)
    except EngineRefused:
        return False
    return True


class OrtNet:
    """An ONNX Runtime session (CPU provider, segkit's thread count) as a ``Net``."""

    def __init__(self, path: Path) -> None:
        ort = _need("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # no spinning: ONNX Runtime's threads otherwise busy-wait after each run and take the cores from whatever runs
        # next (the resizing and PNG writing around each image; PyTorch timed beside it ran 2x slower, 96 vs 48 ms)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        return torch.from_numpy(self.session.run(None, feed)[0])


@functools.cache
def _openvino_core():
    """One OpenVINO ``Core`` for the process, kept to its end. Each Core's CPU plugin installs a signal stack of its
    own on the main thread and later puts back one it found; after several Cores were made and dropped (a bench
    timing fp32 and bf16 nets; OpenVINO 2026.4.1 on an AVX512-BF16 EPYC) the stack put back was one already
    unmapped, and the next signal (Ctrl-C, a scheduler's SIGTERM) ended the process with a segmentation fault
    instead of segkit's "interrupted" message. One Core that lives as long as the process never puts a stack back."""
    return _need("openvino").Core()


class OpenVinoNet:
    """An ONNX graph compiled by OpenVINO for the CPU as a ``Net``: per input shape (static shapes run faster than
    a dynamic graph), latency mode, segkit's thread count, inference in ``precision`` (bf16 only where native)."""

    def __init__(self, path: Path, precision: str = "fp32") -> None:
        self.core = _openvino_core()
        self.model = self.core.read_model(str(path))
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        self.compiled: dict[tuple[int, ...], object] = {}

    def _for(self, shape: tuple[int, ...]):
        if shape not in self.compiled:
            if len(self.compiled) >= OPENVINO_SHAPES:
                self.compiled.pop(next(iter(self.compiled)))
            model = self.model.clone()
            model.reshape({model.inputs[0].get_any_name(): list(shape)})
            self.compiled[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self.compiled[shape]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        request = self._for(tuple(array.shape))
        request.infer({0: array})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))


ORT_FP32_ONLY = "onnxruntime runs segkit's networks in fp32 only (its CPU provider has no bf16 path)"


def engine_net(engine: str, graph: Path, precision: str) -> Net:
    if engine == "onnxruntime":
        if precision != "fp32":
            raise EngineRefused(ORT_FP32_ONLY)
        return OrtNet(graph)
    if engine == "openvino":
        return OpenVinoNet(graph, precision)
    raise SegkitError(f"unknown engine '{engine}'; valid: {', '.join(ENGINES)}")


# ------------------------------------------------------------------------------------------------ checks


def check_inputs(task, make_input: Callable[[np.ndarray], torch.Tensor], count: int = CHECK_IMAGES) -> list:
    """Network inputs made from the first ``count`` images of the task's built-in validation split."""
    from segkit.data.builtin import BuiltinSpec

    return [make_input(task.builtin_sample("val", i, BuiltinSpec())[0]) for i in range(count)]


def _masks(logits: torch.Tensor) -> torch.Tensor:
    return logits > 0 if logits.shape[1] == 1 else logits.argmax(1)


def agreement(reference: Net, candidate: Net, inputs: list[torch.Tensor], precision: str) -> tuple[bool, str]:
    """Whether ``candidate`` computes what ``reference`` (PyTorch fp32) does on ``inputs``, and the measured
    difference in words: fp32 relative logit difference, bf16 identical mask pixels."""
    worst_rel, same, total = 0.0, 0, 0
    for x in inputs:
        with torch.inference_mode():
            want, got = reference(x).float(), candidate(x).float()
        if got.shape != want.shape:
            return False, f"its output has shape {tuple(got.shape)}, PyTorch's {tuple(want.shape)}"
        worst_rel = max(worst_rel, float((got - want).abs().max() / want.abs().max().clamp_min(1e-12)))
        same += int((_masks(got) == _masks(want)).sum())
        total += _masks(want).numel()
    share = same / total
    if precision == "fp32":
        ok = worst_rel <= FP32_RELATIVE
        return ok, f"logits within {worst_rel:.1e} of the largest (limit {FP32_RELATIVE:.0e})"
    ok = share >= BF16_MASK_AGREEMENT
    return ok, f"{100 * share:.2f}% of mask pixels identical to PyTorch fp32 (limit {100 * BF16_MASK_AGREEMENT:.1f}%)"


# ------------------------------------------------------------------------------------------------ the choice


def candidates(device: str, precision: str) -> list[str]:
    """The engines that can run on ``device`` in ``precision``, segkit's own first."""
    if not device.startswith("cpu"):
        return ["torch"]
    out = ["torch"]
    if precision == "fp32":
        out.append("onnxruntime")
    if precision == "fp32" or bf16_supported("cpu"):
        out.append("openvino")
    return out


def time_nets(nets: dict[str, Net], x: torch.Tensor, rounds: int = TIMING_ROUNDS) -> dict[str, float]:
    """Median ms of each net on ``x``, timed in turn within each round (after one untimed call each)."""
    with torch.inference_mode():
        seconds = time_interleaved({name: lambda n=net: n(x) for name, net in nets.items()}, x.device, rounds, 1)
    return {name: 1e3 * s for name, s in seconds.items()}


def fastest(ms: dict[str, float]) -> str:
    """The engine with the smallest time; a tie goes to segkit's own path, then by name (a kept decision is read
    back with its keys sorted)."""
    return min(ms, key=lambda name: (ms[name], name != "torch", name))


@dataclass
class EngineJob:
    """What choosing an engine for one network needs, each part made only when needed (a second run with a kept
    decision and graph needs none but the chosen engine): segkit's own ``Net`` at the job's precision, a PyTorch fp32
    reference, the network's plain modules for export, the check inputs (built-in validation images)."""

    model: nn.Module  # the loaded network (its weights are hashed)
    make_torch: Callable[[], Net]  # segkit's own path at the job's precision (not made when a kept choice is another)
    make_body: Callable[[], nn.Module]  # plain eval-mode modules, BatchNorm folded: what is exported
    make_reference: Callable[[], Net]  # PyTorch fp32
    make_check: Callable[[], list]
    timing_input: torch.Tensor  # one input of the network's usual size
    source: str | Path | None  # where the weights came from (the graph is kept beside it)
    device: str
    precision: str
    what: str  # the network, in words
    _made: dict = field(default_factory=dict)

    def made(self, name: str):
        if name not in self._made:
            makers = {"torch": self.make_torch, "body": self.make_body, "reference": self.make_reference,
                      "check": self.make_check}  # fmt: skip
            self._made[name] = makers[name]()
        return self._made[name]

    @property
    def torch_net(self) -> Net:
        return self.made("torch")

    def graph(self, digest: str) -> Path:
        path = graph_path(self.source, digest)
        if path.is_file():
            return path
        return cached_graph(self.made("body"), self.timing_input, self.source, digest, self.what)[0]

    def checked(self, engine: str, digest: str) -> tuple[Net, str]:
        """The engine's ``Net`` once its outputs agree with PyTorch's (the verdict kept per weights, engine,
        precision and machine); ``EngineRefused`` with the measured difference otherwise."""
        key = f"engine-agreement/{digest}/{engine}/{self.precision}"
        kept = decisions.kept(key)
        if kept is not None and not kept[0]:
            raise _refusal(engine, self.precision, kept[1])
        graph = self.graph(digest)
        try:
            net = engine_net(engine, graph, self.precision)
            if kept is None:
                verdict = list(agreement(self.made("reference"), net, self.made("check"), self.precision))
        except (SegkitError, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - each engine raises its own types (shape inference, compilation)
            verdict, kept = [False, f"it failed on the check images ({_first_line(err)})"], None
        if kept is None:
            decisions.measured(key, lambda: verdict)
            kept = verdict
        if not kept[0]:
            raise _refusal(engine, self.precision, kept[1])
        return net, kept[1]


def _refusal(engine: str, precision: str, words: str) -> EngineRefused:
    how = "cannot run this network" if words.startswith("it failed") else "disagrees with PyTorch on this network"
    return EngineRefused(f"{engine} ({precision}) {how}: {words}")


def select_engine(requested: str, job: EngineJob) -> tuple[Net, EngineChoice]:
    """The ``Net`` to run and why, for ``--engine requested`` (module docstring)."""
    if requested not in ENGINES:
        raise SegkitError(f"unknown engine '{requested}'; valid: {', '.join(ENGINES)}")
    forced = os.environ.get(ENGINE_ENV) if requested == "auto" else None
    if forced:
        if forced not in ENGINES[1:]:
            raise SegkitError(f"{ENGINE_ENV} must be one of {', '.join(ENGINES[1:])}, got '{forced}'")
        requested = forced
    said = f"{ENGINE_ENV}={forced}" if forced else "asked"
    if requested == "torch":
        return job.torch_net, EngineChoice("torch", job.precision, said)
    if requested != "auto":
        if not job.device.startswith("cpu"):
            raise EngineRefused(
                f"--engine {requested} runs on the CPU only; on {job.device} use --engine torch or auto"
            )
        _need(requested)
        if requested == "onnxruntime" and job.precision != "fp32":
            raise EngineRefused(f"{ORT_FP32_ONLY}; add --precision fp32")
        net, words = job.checked(requested, weights_hash(job.model))
        return net, EngineChoice(requested, job.precision, f"{said}; checked: {words}")
    return _auto(job)


def _auto(job: EngineJob) -> tuple[Net, EngineChoice]:
    names = candidates(job.device, job.precision)
    if names == ["torch"]:
        why = (
            "only PyTorch runs on a GPU"
            if not job.device.startswith("cpu")
            else f"no other engine runs {job.precision}"
        )
        return job.torch_net, EngineChoice("torch", job.precision, f"auto: {why}")
    notes = [f"{name} left out: not installed ({INSTALL[name]})" for name in names[1:] if not installed(name)]
    names = [name for name in names if name == "torch" or installed(name)]
    if names == ["torch"]:  # nothing to compare with: no export, no hash
        return job.torch_net, EngineChoice("torch", job.precision, "auto: no other engine is installed", notes)
    digest = weights_hash(job.model)
    passed = ["torch"]
    for name in names[1:]:
        kept = decisions.kept(f"engine-agreement/{digest}/{name}/{job.precision}")
        if kept is not None and not kept[0]:
            notes.append(f"{name} left out: {_refusal(name, job.precision, kept[1])}")
            continue
        passed.append(name)
    size = "x".join(str(s) for s in job.timing_input.shape[-2:])
    key = f"engine/{digest}/{job.precision}/{size}/{'+'.join(passed)}"
    ms = decisions.kept(key)
    nets: dict[str, Net] = {}
    if ms is None:  # check every candidate, then time those that agree
        nets["torch"] = job.torch_net
        for name in passed[1:]:
            try:
                nets[name] = job.checked(name, digest)[0]
            except EngineRefused as err:
                notes.append(f"{name} left out: {err}")
        if len(nets) == 1:
            return job.torch_net, EngineChoice("torch", job.precision, "auto: the only engine that passed", notes)
        key = f"engine/{digest}/{job.precision}/{size}/{'+'.join(nets)}"
        ms, how = decisions.measured(key, lambda: time_nets(nets, job.timing_input))
    else:
        how = decisions.kept_how(key)
    best = fastest(ms)
    if best not in nets:  # a kept decision: only the chosen engine is made (a kept verdict runs no image)
        nets[best] = job.torch_net if best == "torch" else job.checked(best, digest)[0]
    timings = ", ".join(f"{name} {value:.0f} ms" for name, value in ms.items())
    reason = f"auto: fastest at {size} in {job.precision} ({timings}; {how})"
    return nets[best], EngineChoice(best, job.precision, reason, notes)
