"""The workdir lock: one training run per workdir at a time.

`WorkdirLock(workdir)` (a context manager) holds WORKDIR/.lock.json while a run trains there; the
file names its holder (host, process id, command, start time), so a second run on the same
workdir stops at once with a message naming the first, instead of both writing checkpoints and
metrics.jsonl. The file is removed when the run ends. Only process 0 of a multi-process run takes
it (`hold`, which the training loop calls; every process learns whether it got it).

Local folders (and NFS, where the kernel supports it): an flock(2) on the file. The kernel drops
it when the holder dies however it dies, so the lock of a dead process (kill -9, a crashed host)
is taken over at once, and the takeover is logged.

Object storage (gs://, s3://) and file systems without flock: the file alone, rewritten every
HEARTBEAT_S seconds by its holder. A lock whose holder is a dead process of this host, or that has
not been rewritten for STALE_S seconds, is taken over. The limit: there is no atomic create, so
two runs started within the same second on one gs:// workdir may both get it.
"""
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid

import jax
import numpy as np
from absl import logging

from spade_jax.runtime import paths, process
from spade_jax.runtime.errors import ConfigError, PathError, UserError

LOCK_FILE = ".lock.json"
HEARTBEAT_S = 30.0
STALE_S = 120.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _describe(holder: dict) -> str:
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(`{holder.get('command', '?')}`, since {holder.get('since', '?')})")


def _read(path):
    """The holder recorded in the lock file, {} if it is empty or garbled (being written), or
    None if there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


class WorkdirLock:
    """Holds WORKDIR/.lock.json (see the module docstring); PathError naming the holder when
    another live run has it."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.path = paths.workdir_path(workdir) / LOCK_FILE
        self.me = {"host": socket.gethostname(), "pid": os.getpid(),
                   "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:300],
                   "since": _now(), "token": uuid.uuid4().hex}
        self._fd = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _busy(self, holder, detail: str = "") -> PathError:
        return PathError(f"{self.workdir} is in use by another run: {_describe(holder)}{detail}. "
                         f"Wait for it to finish or stop it, or use another --workdir (the lock "
                         f"is {self.path})")

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError, PermissionError) as e:
            raise PathError(f"--workdir {self.workdir} cannot be made a folder ({e.strerror}); "
                            f"pass a new or existing folder you can write") from None
        if not paths.is_url(self.path) and self._flock():
            return
        self._acquire_file()

    def _flock(self) -> bool:
        """True once the flock is held; False where the file system has no flock."""
        path = str(self.path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._busy(_read(self.path) or {}) from None
                return False  # ENOLCK, EOPNOTSUPP, ...: no flock here
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed while we opened it
                break
            os.close(fd)
        previous = _read(self.path)
        if previous:
            logging.warning("took over the lock of %s in %s: that run is no longer running",
                            _describe(previous), self.workdir)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.me).encode())
        self._fd = fd
        return True

    def _stale(self, holder) -> bool:
        if not holder:
            return True
        if holder.get("host") == self.me["host"] and not _alive(int(holder.get("pid", 0))):
            return True
        return time.time() - float(holder.get("heartbeat", 0)) > STALE_S

    def _write(self) -> None:
        paths.write_json(self.path, dict(self.me, heartbeat=time.time()))

    def _acquire_file(self) -> None:
        holder = _read(self.path)
        if holder is not None and holder.get("token") != self.me["token"]:
            if not self._stale(holder):
                age = time.time() - float(holder.get("heartbeat", 0))
                raise self._busy(holder, f", last heartbeat {age:.0f} s ago (a lock without one "
                                         f"for {STALE_S:.0f} s is taken over)")
            logging.warning("took over the stale lock of %s in %s", _describe(holder),
                            self.workdir)
        self._write()
        time.sleep(0.2)  # another run that wrote at the same moment: the last writer holds it
        holder = _read(self.path)
        if not holder or holder.get("token") != self.me["token"]:
            raise self._busy(holder or {})
        self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except Exception as e:  # a failed upload: the next beat retries
                logging.warning("could not refresh the workdir lock %s: %s", self.path, e)

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.remove(str(self.path))
            except FileNotFoundError:
                pass
            os.close(self._fd)  # drops the flock
            self._fd = None
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            holder = _read(self.path)
            if holder and holder.get("token") == self.me["token"]:
                self.path.unlink()


def hold(workdir, stack) -> None:
    """Takes the workdir's lock on process 0 until `stack` (a contextlib.ExitStack) closes;
    when another run holds it, every process raises (process 0 the PathError naming it)."""
    error = None
    if jax.process_index() == 0:
        try:
            stack.enter_context(WorkdirLock(workdir))
        except UserError as e:
            error = e
    if process.multi_process():
        from jax.experimental import multihost_utils
        failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if failed and error is None:
            error = ConfigError(f"{workdir}: process 0 could not lock it (see its message)")
    if error is not None:
        raise error
