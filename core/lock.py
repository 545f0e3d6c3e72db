"""One lock file per project, so two processes never write the same project."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ProjectLocked

LOCK_NAME = ".stillroom.lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict) -> str:
    cmd = info.get("command") or "stillroom"
    return f"process {info.get('pid')} ({cmd}) on {info.get('host', '?')}"


class ProjectLock:
    """Held while a process writes a project. A lock left by a dead process is taken over."""

    def __init__(self, folder: Path, purpose: str = ""):
        self.path = Path(folder) / LOCK_NAME
        self.purpose = purpose
        self.held = False

    def acquire(self) -> "ProjectLock":
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                "command": " ".join(["stillroom"] + sys.argv[1:3]) if self.purpose == "" else self.purpose}
        payload = json.dumps(info).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                same_host = holder.get("host") == socket.gethostname()
                if holder and same_host and holder.get("pid") == os.getpid():
                    raise ProjectLocked(f"{self.path.parent}: already open in this process "
                                        f"({holder.get('command')})")
                if holder and (not same_host or _alive(int(holder.get("pid", 0)))):
                    raise ProjectLocked(f"{self.path.parent}: in use by {_describe(holder)}",
                                        "wait for it to finish or stop it")
                self._take_over_stale(holder)
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return self
        raise ProjectLocked(f"{self.path}: could not take the lock")

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            # A lock torn by a kill between create and write: treat as stale unless very new.
            try:
                if time.time() - self.path.stat().st_mtime < 2:
                    return {"pid": -1, "host": socket.gethostname(), "command": "starting"}
            except OSError:
                pass
            return {}

    def _take_over_stale(self, holder: dict) -> None:
        # Rename first so two processes racing for a stale lock cannot both delete a fresh one.
        grave = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, grave)
            os.unlink(grave)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self.held:
            try:
                if self._read().get("pid") == os.getpid():
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
