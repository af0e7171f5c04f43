"""A run folder has one owner, and a signal never tears what is being written into it.

- ``RunFolderLock``: ``segkit train`` holds ``.segkit-train.lock`` in its run folder for the life of the run (its
  PID, host and start time inside). A second training into the same folder refuses at once, naming the holder,
  and changes nothing; a lock left by a process that no longer runs on this host is taken over. Whoever holds the
  lock removes the temporary files a killed writer left (``.last.pt.tmp-<PID>``).
- ``Signals``: SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) end the run as an ``Interrupted``, but not
  while a checkpoint is written: inside ``Signals.deferred()`` a signal is kept and raised once the write is done,
  so the checkpoint is complete and the resume command can be printed. The process then exits with 128 + the
  signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path

from segkit.errors import SegkitError

LOCK_NAME = ".segkit-train.lock"
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); the exit status is 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a run ended by ``interrupt``: 128 + its signal, 130 for a plain Ctrl-C."""
    return interrupt.exit_code if isinstance(interrupt, Interrupted) else 128 + signal.SIGINT


class Signals:
    """SIGTERM and SIGINT raise ``Interrupted`` in the main thread, except inside ``deferred()``, where the first
    one is kept and raised when the block ends. Only the first signal of a run interrupts it: the ones that follow
    while the run saves and says how to resume are kept, not raised. Elsewhere than the main thread (a notebook's
    worker thread) nothing is installed."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._deferring = 0
        self._interrupted = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self._interrupted:
            return  # already stopping: the run finishes saving and says how to resume
        if self._deferring:
            self.pending = self.pending or signum
            return
        self._interrupted = True
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self):
        """A block no signal interrupts (a checkpoint being written); one that came meanwhile is raised after."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self.pending is not None and not self._interrupted:
            signum, self.pending = self.pending, None
            self._interrupted = True
            raise Interrupted(signum)


class RunFolderLock:
    """The run folder's lock (see the module's docstring); ``acquire`` creates the folder when it is missing, and
    ``release`` removes what ``acquire`` created when the run wrote nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self.created_folder = False
        self.removed_temporaries: list[str] = []

    def acquire(self) -> RunFolderLock:
        if not self.folder.exists():
            try:
                self.folder.mkdir(parents=True)
            except FileExistsError:
                pass  # another run created it just now: the lock below decides
            except OSError as err:
                raise SegkitError(f"cannot create the run folder '{self.folder}': {err}") from None
            else:
                self.created_folder = True
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder is None or _alive(holder):
                    raise self._in_use(holder) from None
                self.path.unlink(missing_ok=True)  # its process is gone: a stale lock
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_me(), f)
            self.held = True
            self.removed_temporaries = remove_stale_temporaries(self.folder)
            return self
        raise self._in_use(_read_holder(self.path))

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = _read_holder(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        if self.created_folder and not any(self.folder.iterdir()):
            self.folder.rmdir()  # the run could not start: leave no folder behind

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _in_use(self, holder: dict | None) -> SegkitError:
        if holder is None:
            who = "another segkit train (its lock is being written)"
        else:
            who = f"segkit train PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
        return SegkitError(
            f"run folder '{self.folder}' is in use by {who}; wait for it to end or choose another --out. If that "
            f"process no longer runs (another machine sharing the folder cannot be checked from here), delete "
            f"'{self.path}'"
        )


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Remove the checkpoint temporaries (``.NAME.tmp-PID``) whose writer no longer runs; returns their names."""
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp-*")):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive({"pid": int(pid), "host": socket.gethostname()}):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _read_holder(path: Path) -> dict | None:
    """The lock's content, or None while it is being written (or cannot be read)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _alive(holder: dict) -> bool:
    """Whether the lock's process runs: checked by PID on this host; another host's is taken to run."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True
