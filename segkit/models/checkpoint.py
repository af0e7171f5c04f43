"""Reading backbone weights from files: official Res2Net .pth, timm checkpoints and segkit's own."""

from __future__ import annotations

import pickle
import re
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
    kind = _file_kind(path)
    if kind != "checkpoint":
        raise SegkitError(
            f"checkpoint '{path}' {kind}: it is not a PyTorch checkpoint (torch.save writes a zip archive, older "
            "versions a pickle). Pass the .pth/.pt file the training or the download produced"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise SegkitError(
            f"checkpoint '{path}' was refused: {_what_was_refused(err)}, which only a full unpickle could build "
            "(it was read with weights_only=True; nothing in it was run). Re-save the weights as a plain state_dict "
            "(torch.save(model.state_dict(), path))"
        ) from None
    except Exception as err:  # torch raises RuntimeError / EOFError / zipfile errors for damaged files
        raise SegkitError(
            f"checkpoint '{path}' could not be read ({type(err).__name__}); the file is damaged (truncated, or "
            "still being written): copy or save it again"
        ) from None
    if not isinstance(obj, Mapping):
        raise SegkitError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dict of tensors")
    return dict(obj)


def _file_kind(path: Path) -> str:
    """ "checkpoint" for what torch.load can read (a zip archive, or a pickle as older torch.save wrote), else what
    the file is instead, said in words."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "is empty"
    if head.startswith(b"PK") or head[0] == 0x80:  # a zip archive (even a truncated one), or pickle protocol 2+
        return "checkpoint"
    return "starts with neither a zip nor a pickle header"


def _what_was_refused(err: Exception) -> str:
    """The Python object a weights-only read refused, from torch's message, without its advice to unpickle."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return f"it refers to the Python object {found.group(1)}" if found else "it holds pickled Python objects"


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
