"""The saliency accumulators' cross-process reduction has one layout on every process: a process that scored no
image takes part with zeros, and the result equals one process scoring every image."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_reduction_with_a_process_that_saw_no_image_equals_one_process(tmp_path):
    script = Path(__file__).with_name("reduce_worker.py")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, cwd=root,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    for kind in ("saliency", "polyp"):
        reduced = json.loads((tmp_path / f"reduced_{kind}.json").read_text())
        single = json.loads((tmp_path / f"single_{kind}.json").read_text())
        assert reduced.keys() == single.keys() and "mdice" in json.loads((tmp_path / "single_polyp.json").read_text())
        assert all(reduced[k] == pytest.approx(single[k], abs=1e-12) for k in single), (kind, reduced, single)
