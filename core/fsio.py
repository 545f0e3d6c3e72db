"""Durable file writes: atomic replace, fsynced appends, and repair of a torn last line."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import StillroomError


def _fail(path: Path, exc: OSError, doing: str) -> StillroomError:
    import errno
    if exc.errno == errno.ENOSPC:
        return StillroomError(f"{path}: disk full while {doing}; nothing already saved was changed",
                              "free some space and try again")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return StillroomError(f"{path}: cannot write ({exc.strerror}) while {doing}; nothing already "
                              f"saved was changed", "check the folder's permissions")
    return StillroomError(f"{path}: {exc.strerror or exc} while {doing}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    """The permissions a rewritten file keeps: its current ones, else what a plain open() would give."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it: old or new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode_for(path))     # mkstemp makes 0600; keep the file's usual permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise _fail(path, exc, "saving") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def dumps_row(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(dumps_row(r) + "\n" for r in rows))


class JsonlAppender:
    """Appends one JSON line at a time; each line is flushed and fsynced before `append` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise _fail(self.path, exc, "opening for append") from None

    def append(self, row: dict) -> None:
        line = dumps_row(row) + "\n"
        try:
            # One write call per line keeps a kill from interleaving half lines.
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise _fail(self.path, exc, "appending a row") from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def repair_torn_tail(path: Path) -> int:
    """Drop a last line left incomplete by a kill (no newline, or not JSON). Returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # Find the start of the last line.
        chunk = min(size, 1 << 16)
        pos = size
        tail = b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            handle.seek(pos)
            tail = handle.read(step) + tail
            cut = tail.rstrip(b"\n").rfind(b"\n")
            if cut != -1:
                start = pos + cut + 1
                break
        else:
            start = 0
        handle.seek(start)
        last = handle.read()
        torn = not last.endswith(b"\n")
        if not torn:
            try:
                json.loads(last.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                torn = True
        if not torn:
            return 0
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
        return size - start
