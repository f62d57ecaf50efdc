"""One launcher per run directory: an advisory lock on `WORKDIR/run.lock` that names its holder.

The lock is `fcntl.flock` on the file, and the file's content says who holds
it (pid, host, start time). A second launcher on a held workdir fails at once
with a `WorkdirLocked` naming the holder. The kernel drops the lock when its
process dies, however it dies (SIGKILL included), so a lock left by a killed
launcher is free: the next launcher takes it over, and warns naming the dead
holder that the file still names (a clean exit empties the file).

Shared filesystems, multi-host runs: one lock for the whole run, taken by
process 0 only (the driver broadcasts its outcome, so every process of a
second launch fails together). On NFS, Linux maps flock to POSIX locks that
the server arbitrates across hosts (NFSv4, or v3 with lockd); the lock of a
host that crashed is freed when the server's lease for it expires (90 s by
default on NFSv4). A filesystem without lock support (ENOLCK, EOPNOTSUPP,
e.g. a Lustre mount without `-o flock`) gives a warning and an unlocked run.
"""
import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Optional

from absl import logging as absl_logging

from jaxmtf.runs.rundir import RunDirError

LOCK_FILE = "run.lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)


class WorkdirLocked(RuntimeError):
    """Another live launcher holds the run directory. The message names it."""


def _holder_text() -> str:
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})


def describe(content: str) -> str:
    """'pid 123 on host h, started T' from a lock file's content (or what is known of it)."""
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown holder (the lock file names none)"


class WorkdirLock:
    """acquire() / release(): the lock of one run directory, held by this process."""

    def __init__(self, workdir: str):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self._fd: Optional[int] = None
        self._previous, self._made_dir, self._made_file = "", False, False

    def acquire(self) -> None:
        """Takes the lock (creating the workdir and lock file if needed) or raises WorkdirLocked."""
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise RunDirError(f"run directory '{self.workdir}': got a file, expected a directory (or a path "
                                "that does not exist yet)")
        self._made_dir = not os.path.isdir(self.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self._made_file = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise WorkdirLocked(
                f"run directory '{self.workdir}': got a lock held by {describe(holder)} ({self.path}), expected "
                "no other launcher on it: wait for that run, stop it, or use another --workdir"
            ) from None
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            absl_logging.warning("%s: this filesystem has no file locks (%s); running without the workdir lock",
                                 self.path, e)
        self._fd = fd
        self._previous = os.pread(fd, 4096, 0).decode(errors="replace")
        if self._previous.strip():
            absl_logging.warning("%s: took over the lock left by %s (that process is gone)", self.path,
                                 describe(self._previous))
        self._write(_holder_text())

    def _write(self, text: str) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)
        os.fsync(self._fd)

    def release(self, restore: bool = False) -> None:
        """Frees the lock. A clean release empties the file; `restore` (a refused start) puts back what was
        there before, removing the file and the workdir if acquire created them, so a refusal leaves no trace."""
        if self._fd is None:
            return
        if restore and self._made_file:
            os.unlink(self.path)
        else:
            self._write(self._previous if restore else "")
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if restore and self._made_dir and not os.listdir(self.workdir):
            os.rmdir(self.workdir)
