"""The command line: help, and the backbone benchmark on tiny settings."""

import json
import subprocess
import sys

from segkit.cli import main


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "bench" in out


def test_python_m_segkit_runs():
    res = subprocess.run([sys.executable, "-m", "segkit", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "bench" in res.stdout


def test_bench_backbone_tiny(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "backbone",
            "--repeats",
            "1",
            "--latency-size",
            "64",
            "--throughput-batch",
            "2",
            "--throughput-size",
            "32",
            "--train-batch",
            "2",
            "--train-size",
            "32",
            "--variants",
            "res2net50_48w_2s",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    models = [(r["model"], r["implementation"]) for r in data["rows"]]
    assert ("res2net50_26w_4s", "timm") in models and ("resnet50", "timm") in models
    assert ("res2net50_48w_2s", "segkit") in models
    assert all(r["latency_fast_ms"] > 0 for r in data["rows"])
    assert "res2net_over_resnet_latency_fast" in data["ratios"]
    assert "fast_vs_timm_eager_speedup" in capsys.readouterr().out


def test_bench_bad_variant_is_a_clear_error(capsys):
    assert main(["bench", "backbone", "--variants", "res2net50_26w_5s"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone" in err and "Traceback" not in err
