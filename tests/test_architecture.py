"""The shape of the code: one task table, inference without training code, a thin CLI, a new task in one class."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segkit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segkit"
TINY = [
    "data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=1", "eval.max_images=2",
    "model.backbone=res2net50_14w_8s", "model.decoder_channels=16",
]  # fmt: skip


def test_only_the_task_package_compares_task_names():
    pattern = re.compile(r"task (==|!=)|== \"(saliency|segmentation)\"|\"(saliency|segmentation)\" ==")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if PACKAGE / "tasks" not in path.parents
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_functions_below_the_cli_take_no_argparse_namespace():
    offenders = []
    for path in (p for layer in ("inference", "training", "evaluation") for p in (PACKAGE / layer).glob("*.py")):
        tree = ast.parse(path.read_text())
        offenders += [f"{path.name}: imports argparse" for node in ast.walk(tree) if _imports(node, "argparse")]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                if any("Namespace" in ast.unparse(a) for a in annotations):
                    offenders.append(f"{path.name}: {node.name}")
    assert offenders == []


def _imports(node: ast.AST, module: str) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == module for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module


@pytest.fixture(scope="module")
def tiny_checkpoint(module_tmp):
    from segkit.training.train import train

    out = module_tmp
    result = train(load_config(None, ["task=saliency", f"out_dir={out}", "name=run", *TINY]))
    return result.run_dir / "best.pt"


def test_prediction_imports_no_training_or_evaluation_code(tiny_checkpoint):
    script = (
        "import sys, json, numpy as np, segkit\n"
        f"p = segkit.Predictor({str(tiny_checkpoint)!r})\n"
        "mask = p.predict(np.zeros((40, 30, 3), np.uint8))\n"
        "print(json.dumps([mask.shape, sorted(m for m in sys.modules if m.startswith(('segkit.', 'albu')))]))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    shape, modules = json.loads(res.stdout.strip().splitlines()[-1])
    assert shape == [40, 30]
    assert "segkit.inference.pipeline" in modules  # the check itself can see segkit's modules
    assert not [m for m in modules if m.startswith(("segkit.training", "segkit.evaluation"))], modules
    assert "albumentations" not in modules and "segkit.data.transforms" not in modules, "augmentation is training's"


def test_importtime_of_predictor_lists_no_training_module():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import segkit; segkit.Predictor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0 and "segkit.inference.predictor" in res.stderr
    assert not re.search(r"segkit\.(training|evaluation)\b", res.stderr)


def test_a_new_task_is_one_class_and_one_table_entry(tmp_path, monkeypatch, capsys):
    """Glass detection as saliency on other data: a subclass and an entry, nothing else."""
    from segkit import tasks
    from segkit.cli import main

    class GlassTask(tasks.SaliencyTask):
        name = "glass"

    monkeypatch.setitem(tasks.TASKS, "glass", GlassTask())
    sets = sum((["--set", s] for s in TINY), [])
    assert main(["train", "--task", "glass", "--out", str(tmp_path / "run"), *sets]) == 0
    assert "finished: max_fm" in capsys.readouterr().out
    import segkit

    predictor = segkit.Predictor(tmp_path / "run" / "best.pt")
    assert predictor.task == "glass"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--format", "csv"]) == 0
    assert "max_fm" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--tta"], "--tta does not apply to --pred/--gt"),
        (["--data", "x", "--split", "train"], "--data, --split do not apply to --pred/--gt"),
    ],
)
def test_eval_on_saved_masks_refuses_checkpoint_flags(tmp_path, capsys, flags, message):
    from segkit.cli import main

    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path), "--gt", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_eval_checkpoint_refuses_folder_flags(tiny_checkpoint, capsys):
    from segkit.cli import main

    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--strict-size", "--workers", "2"]) == 2
    assert "--strict-size, --workers do not apply to --checkpoint" in capsys.readouterr().err


def test_the_layers_contract_holds():
    """import-linter's check of the layers contract in pyproject.toml (module- and function-level imports)."""
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "1 kept, 0 broken" in res.stdout


def test_no_import_cycle_in_segkit():
    """No module of segkit reaches itself through imports, wherever in a module they are written."""
    import grimp

    graph = grimp.build_graph("segkit", cache_dir=None)
    assert "segkit.tasks.saliency" in graph.modules and graph.find_modules_directly_imported_by("segkit.tasks")
    cycles = [
        [a, *chain]
        for a in sorted(graph.modules)
        for b in sorted(graph.find_modules_directly_imported_by(a))
        if (chain := graph.find_shortest_chain(importer=b, imported=a))
    ]
    assert cycles == []


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    """grimp, which both checks above rest on, counts an import written inside a function."""
    import grimp

    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from probe_pkg import high\n\n    return high\n")
    (pkg / "high.py").write_text("from probe_pkg import low\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("probe_pkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert graph.find_shortest_chain(importer="probe_pkg.low", imported="probe_pkg.high")
