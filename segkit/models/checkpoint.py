"""Reading backbone weights from files: official Res2Net .pth, timm checkpoints and segkit's own."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from segkit.errors import SegkitError

_NESTING_KEYS = ("state_dict", "model")  # where training scripts commonly nest the weights
_PREFIXES = ("module.", "model.", "backbone.", "encoder.")  # DDP / wrapper prefixes stripped when all keys share one
_HEAD_PREFIXES = ("fc.",)  # ImageNet classifier, not part of a feature extractor


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: a file that needs unpickling code is refused and
    nothing in it runs."""
    path = Path(path)
    if not path.is_file():
        raise SegkitError(f"checkpoint '{path}' does not exist: pass the path of a .pth/.pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise SegkitError(
            f"checkpoint '{path}' was refused: it carries pickled Python objects that only a full unpickle could "
            f"build (read with weights_only=True; nothing in it was run). Re-save it as a plain state_dict. "
            f"Detail: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # torch raises RuntimeError / EOFError / zipfile errors for damaged files
        raise SegkitError(
            f"checkpoint '{path}' could not be read ({type(err).__name__}); the file is damaged or not a PyTorch "
            "checkpoint"
        ) from None
    if not isinstance(obj, Mapping):
        raise SegkitError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dict of tensors")
    return dict(obj)


def extract_state_dict(obj: Mapping, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside ``obj``: unnested from 'state_dict'/'model', with a shared wrapper prefix removed."""
    for key in _NESTING_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise SegkitError(f"{source} holds no tensors; expected a state_dict (optionally under 'state_dict'/'model')")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load an official / timm / segkit backbone checkpoint into ``model`` strictly (``fc.*`` dropped)."""
    state = extract_state_dict(read_checkpoint(path), source=f"checkpoint '{path}'")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise SegkitError(
            f"checkpoint '{path}' does not fit this backbone: missing keys {_short(missing)}; "
            f"unexpected keys {_short(unexpected)}. Check that the file is for the same variant."
        )
    wrong = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5])
        raise SegkitError(f"checkpoint '{path}' has tensors of the wrong shape: {details}")
    model.load_state_dict(state, strict=True)


def _short(keys: list[str], limit: int = 20) -> str:
    if not keys:
        return "none"
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more
