"""User settings kept outside projects: recent projects and the theme (in the config folder)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from stillroom.core import locations
from stillroom.core.fsio import atomic_write_text

MAX_RECENT = 20


def _path() -> Path:
    return locations.config_dir() / "settings.json"


def load() -> dict:
    try:
        data = json.loads(_path().read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(data: dict) -> None:
    try:
        atomic_write_text(_path(), json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    except Exception:       # settings are a convenience; never fail the app over them
        pass


def recent_projects() -> list[dict]:
    """[{"path": str, "name": str, "opened": float}], newest first."""
    items = load().get("recent", [])
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("path"), str)]


def remember_project(path: Path, name: str) -> None:
    data = load()
    path = str(Path(path).resolve())
    items = [i for i in recent_projects() if i.get("path") != path]
    items.insert(0, {"path": path, "name": name, "opened": time.time()})
    data["recent"] = items[:MAX_RECENT]
    save(data)


def forget_project(path: str) -> None:
    data = load()
    data["recent"] = [i for i in recent_projects() if i.get("path") != path]
    save(data)


def theme() -> str | None:
    value = load().get("theme")
    return value if isinstance(value, str) else None


def set_theme(name: str) -> None:
    data = load()
    data["theme"] = name
    save(data)
