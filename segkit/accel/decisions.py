"""Choices made by measuring, made once per machine and kept, so that the same input gives the same output run
after run.

Timing decides two things (bf16 or fp32 for ``--precision auto`` and training's autocast; bf16 or fp32 for each
atrous convolution, ``segkit.accel.onednn.FastestAtrous``), and a timing on a busy machine can come out either way.
So each is measured the first time it is needed on a machine and kept in ``decisions.json`` under segkit's cache
folder (``$SEGKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/segkit``, else ``~/.cache/segkit``), keyed by the CPU model,
its instruction-set flags, the torch version and the thread count: another machine, another torch or another
thread count measures again. ``SEGKIT_REMEASURE=1`` measures again on request (and keeps the new result);
``SEGKIT_AUTO_PRECISION=fp32|bf16`` sets what ``auto`` means without measuring.

A cache that cannot be written (a read-only home) only means measuring in every process; a damaged one is
measured anew and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from segkit.data.io import write_bytes
from segkit.errors import SegkitError

CACHE_DIR_ENV = "SEGKIT_CACHE_DIR"
REMEASURE_ENV = "SEGKIT_REMEASURE"
AUTO_PRECISION_ENV = "SEGKIT_AUTO_PRECISION"
FILE_NAME = "decisions.json"


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segkit"


def cache_file() -> Path:
    return cache_dir() / FILE_NAME


@functools.cache
def cpu_model_and_flags() -> tuple[str, str]:
    """The CPU's model name and its flags (Linux's /proc/cpuinfo; elsewhere what ``platform`` says)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return model, flags


def machine() -> dict:
    """What a measurement depends on."""
    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def machine_key() -> str:
    return hashlib.sha1(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]


def measured(name: str, measure: Callable[[], float | bool | str]) -> tuple[float | bool | str, str]:
    """(value, how it was obtained) of the measurement ``name`` on this machine: kept from its first time, or
    ``measure()`` now (first time, or ``SEGKIT_REMEASURE=1``), then kept."""
    key = f"{name}@{machine_key()}"
    data = _load()
    if key in data and not os.environ.get(REMEASURE_ENV):
        entry = data[key]
        return entry["value"], f"measured {entry['date']}, kept in {cache_file()}"
    value = measure()
    data[key] = {"value": value, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine()}
    _store(data)
    return value, f"measured now, kept in {cache_file()}"


def kept(name: str):
    """The kept value of the measurement ``name`` on this machine, or None (never measured here, or
    ``SEGKIT_REMEASURE=1``)."""
    if os.environ.get(REMEASURE_ENV):
        return None
    entry = _load().get(f"{name}@{machine_key()}")
    return None if entry is None else entry["value"]


def kept_how(name: str) -> str:
    entry = _load().get(f"{name}@{machine_key()}", {})
    return f"measured {entry.get('date', '?')}, kept in {cache_file()}"


def _load() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(data: dict) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())
    except (OSError, SegkitError):
        pass  # not writable: measured again next time, nothing else changes
