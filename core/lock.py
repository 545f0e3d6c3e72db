"""One lock per project, so two processes never write the same project.

The lock is an flock on `.stillroom.lock`: the kernel releases it when its process dies, however it
dies, so a lock left by a killed process is simply free again. The file also records who holds it,
so a refused process can name the holder.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ProjectLocked

LOCK_NAME = ".stillroom.lock"


def process_alive(pid: int, host: str = "") -> bool:
    """Whether a process that recorded its pid (and host) may still be running: one on another host
    is assumed alive; pid 0 or less is not a process."""
    if host and host != socket.gethostname():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent died too stays a zombie until something reaps it, and in a
    container PID 1 often never does; it still answers kill(pid, 0) but runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False                 # no /proc (macOS) or already gone: kill(pid, 0) decided
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"Z"


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    cmd = info.get("command") or "stillroom"
    return f"process {info.get('pid')} ({cmd}) on {info.get('host', '?')}"


class ProjectLock:
    """Held while a process writes a project; refused with the holder's name while another holds it."""

    def __init__(self, folder: Path, purpose: str = ""):
        self.path = Path(folder) / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "ProjectLock":
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                raise ProjectLocked(f"{self.path.parent}: already open in this process "
                                    f"({holder.get('command')})") from None
            raise ProjectLocked(f"{self.path.parent}: in use by {_describe(holder)}",
                                "wait for it to finish or stop it") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3),
                "command": self.purpose or " ".join(["stillroom"] + sys.argv[1:2])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            data = os.pread(fd, 4096, 0)
            return json.loads(data.decode() or "{}")
        except (OSError, ValueError):
            return {}

    def holder(self) -> dict:
        """Who holds the lock now ({} when nobody does)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read(fd) or {"pid": None}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return {}
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            # The file stays (removing it would race with a process opening it); the flock goes.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
