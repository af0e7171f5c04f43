"""A run folder has one owner; signals never tear a checkpoint; divergence never saves bad weights; --resume --set."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml

import segkit.training.train as train_module
from segkit.cli import main
from segkit.config import default_config_path, load_config, save_config, to_dict
from segkit.errors import SegkitError
from segkit.inference.checkpoint import read_checkpoint
from segkit.training.runfolder import LOCK_NAME, Interrupted, RunFolderLock, Signals
from tests.test_engine import TINY

SETS = sum((["--set", s] for s in TINY), [])


def _train_args(out, *extra):
    return ["train", "--task", "saliency", "--out", str(out), *SETS, *extra]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_second_training_into_a_busy_folder_refuses_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "segkit", *_train_args(out, "--set", "schedule.max_steps=3")]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "config.yaml").exists():
        time.sleep(0.05)
    assert (out / LOCK_NAME).exists(), "the first run holds the folder"
    before = _files(out)
    assert main(_train_args(out, "--set", "seed=7")) == 2
    err = capsys.readouterr().err
    assert f"is in use by segkit train PID {first.pid} on {socket.gethostname()}, started " in err
    assert "Traceback" not in err
    assert _files(out)["config.yaml"] == before["config.yaml"], "the second run wrote nothing"
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]
    log = (out / "train.log").read_text()
    assert log.count("task saliency, backbone") == 1, "one run's log, not two mixed"
    assert read_checkpoint(out / "last.pt")["step"] == 3 and not (out / LOCK_NAME).exists()


def test_config_yaml_is_never_seen_half_written(tmp_path):
    """The busy-folder check above once read config.yaml while the first run was writing it (empty, then full):
    save_config renames a finished file into place. A reader thread polls while it rewrites the file 300 times;
    with a truncate-then-write it saw thousands of torn reads here."""
    path = tmp_path / "config.yaml"
    first = load_config(default_config_path("saliency"))
    second = dataclasses.replace(first, seed=7)
    whole = {yaml.safe_dump(to_dict(c), sort_keys=False) for c in (first, second)}
    save_config(first, path)
    torn, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            text = path.read_text()
            if text not in whole:
                torn.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(300):
        save_config(second if i % 2 else first, path)
    stop.set()
    thread.join()
    assert torn == [], f"{len(torn)} reads saw a partial config.yaml (lengths {sorted(set(torn))[:5]})"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"], "no temporary left beside it"


def test_a_stale_lock_is_taken_over_and_a_live_one_on_this_host_refuses(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "started": "then"}
    (folder / LOCK_NAME).write_text(json.dumps(stale))
    (folder / f".last.pt.tmp-{dead.pid}").write_bytes(b"torn")  # what a killed writer left
    with RunFolderLock(folder) as lock:
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert lock.removed_temporaries == [f".last.pt.tmp-{dead.pid}"]
        with pytest.raises(SegkitError, match=f"in use by segkit train PID {os.getpid()}"):
            RunFolderLock(folder).acquire()
    assert not (folder / LOCK_NAME).exists()
    other_host = {"pid": 1, "host": "elsewhere", "started": "now"}
    (folder / LOCK_NAME).write_text(json.dumps(other_host))
    with pytest.raises(SegkitError, match="on elsewhere.*delete"):
        RunFolderLock(folder).acquire()  # another machine's process cannot be checked: refused, never taken


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(_train_args(out, "--set", "data.batch_size=100000")) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert not out.exists()


def test_sigterm_during_the_checkpoint_write_completes_it_then_stops(tmp_path, monkeypatch, capsys):
    """The signal comes while last.pt is written: the file completes, no temporary stays, the run says how to
    resume and exits 143 (128 + SIGTERM); the resume then finishes the run."""
    out = tmp_path / "run"
    real = train_module.atomic_save
    sent = []

    def writer_signalled_midway(payload, path):
        if path.name == "last.pt" and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the checkpoint is being written
        real(payload, path)

    monkeypatch.setattr(train_module, "atomic_save", writer_signalled_midway)
    assert main(_train_args(out)) == 128 + signal.SIGTERM
    assert read_checkpoint(out / "last.pt")["step"] == 2, "complete, and the run stopped right after it"
    assert not list(out.glob(".*tmp*")) and not (out / LOCK_NAME).exists()
    log = (out / "train.log").read_text()
    assert "interrupted (SIGTERM) at step 2" in log and f"--out {out} --resume" in log
    monkeypatch.undo()
    assert main(["train", "--task", "saliency", "--out", str(out), "--resume"]) == 0
    assert read_checkpoint(out / "last.pt")["step"] == 4


def test_sigterm_during_the_final_evaluation_keeps_last_pt(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = train_module.validate

    handlers = []

    def validate_then_signalled(run):
        if run.step == run.total_steps:
            handlers.append(signal.getsignal(signal.SIGTERM))
            if handlers[-1] not in (signal.SIG_DFL, signal.SIG_IGN, None):  # else the signal would end pytest
                os.kill(os.getpid(), signal.SIGTERM)
        return real(run)

    monkeypatch.setattr(train_module, "validate", validate_then_signalled)
    code = main(_train_args(out))
    assert handlers and getattr(handlers[0], "__self__", None).__class__ is Signals, handlers
    assert code == 128 + signal.SIGTERM
    assert read_checkpoint(out / "last.pt")["step"] == 4
    assert "interrupted (SIGTERM) at step 4" in (out / "train.log").read_text()


def test_signals_are_deferred_inside_a_write_and_raised_after():
    with Signals() as signals:
        with pytest.raises(Interrupted) as stop:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done = True  # the block runs to its end
        assert done and stop.value.exit_code == 130
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal while the run stops: kept, not raised


def test_divergence_never_saves_bad_weights_and_says_what_the_folder_holds(tmp_path):
    from segkit.config import load_config

    cfg = load_config(None, ["task=saliency", f"out_dir={tmp_path}", "name=nan", *TINY, "optim.lr=1.0e+30",
                             "schedule.max_steps=50", "optim.name=sgd", "amp=false"])  # fmt: skip
    with pytest.raises(SegkitError, match="no checkpoint was written in") as err:
        train_module.train(cfg)
    assert "start again" in str(err.value) and "last good checkpoint" not in str(err.value)
    assert not (tmp_path / "nan" / "last.pt").exists() and not (tmp_path / "nan" / "best.pt").exists()


def test_exploded_weights_are_refused_before_writing(tmp_path):
    from segkit.config import load_config
    from segkit.training.distributed import DistInfo

    out = tmp_path / "run"
    out.mkdir()
    run = train_module.build_run(load_config(None, ["task=saliency", *TINY]), out, DistInfo())
    with torch.no_grad():
        next(run.net.parameters()).fill_(1e12)
    with pytest.raises(train_module.TrainingDiverged, match="exploded"):
        train_module.save(run, "last.pt")
    assert not (out / "last.pt").exists() and not list(out.iterdir())


def test_resume_applies_the_keys_that_may_change_and_refuses_the_others(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(out, "--set", "schedule.max_steps=2")) == 0
    capsys.readouterr()
    assert main(["train", "--task", "saliency", "--out", str(out), "--resume", "--set", "model.backbone=resnet50"]) == 2
    assert "config key 'model.backbone' cannot change when a run is resumed" in capsys.readouterr().err
    assert main(["train", "--task", "polyp", "--out", str(out), "--resume"]) == 2
    assert "is a saliency run, but --task polyp" in capsys.readouterr().err
    resume = ["train", "--task", "saliency", "--out", str(out), "--resume"]
    assert main([*resume, "--set", "schedule.max_steps=3", "--set", "optim.lr=0.0005"]) == 0
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["optim"]["lr"] == 0.0005
    assert "with schedule.max_steps=3, optim.lr=0.0005" in (out / "train.log").read_text()
