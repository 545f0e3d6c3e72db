"""What every export format shares: its error, atomic files and folders, the cleanup of a killed export's
leftovers, and the stamp that ties an exported folder to the weights it came from.

Every file and folder is written under a temporary name and renamed when complete, so a half-written
export never carries its final name.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Optional

from ..errors import Cancelled, StillroomError
from ..lock import process_alive

STAMP = "stillroom-export.json"


class ExportError(StillroomError):
    """A model cannot be exported in the asked format."""


# ---------------------------------------------------------------- atomic files and folders

def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial{os.getpid()}")


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder to its final name, replacing an older export of the same name."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


_LEFTOVER = re.compile(r"^\..+\.(?:partial|old|log)(\d+)$")      # partial_path, publish_dir, the converter log
_TEMP_FILE = re.compile(r"^\.(?:Modelfile|gguf-check\.json|quants\.json|quants\.md)\..+\.tmp$")  # atomic_write_text


def remove_leftovers(out_dir: Path) -> None:
    """A killed export cannot clean up after itself: the next one removes the partial files and folders
    whose process is gone (an export holds the project lock, so none is being written now)."""
    for path in out_dir.iterdir():
        match = _LEFTOVER.match(path.name)
        if (match and not process_alive(int(match.group(1)))) or _TEMP_FILE.match(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("export stopped")


# ---------------------------------------------------------------- the stamp of an exported folder

def source_stamp(weights) -> dict:
    source = weights.adapter or weights.model_dir
    newest = max((p.stat().st_mtime for p in Path(source).rglob("*") if p.is_file()), default=0.0)
    return {"run": weights.run_id, "student": weights.student_ref, "source": str(source),
            "source_mtime": round(newest, 3)}


def write_stamp(folder: Path, weights, kind: str) -> None:
    stamp = {"kind": kind, **source_stamp(weights), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def stamp_matches(folder: Path, weights) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    current = source_stamp(weights)
    return all(stamp.get(k) == current[k] for k in ("run", "student", "source", "source_mtime"))
