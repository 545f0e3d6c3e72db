"""Every path Stillroom keeps outside a project folder, in one place (platformdirs)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "stillroom"


def _override(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def data_dir() -> Path:
    """Where new projects go by default."""
    return _override("STILLROOM_DATA_DIR") or Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Assembled GGUFs and de-quantized safetensors folders (safe to delete; rebuilt on demand)."""
    return _override("STILLROOM_CACHE_DIR") or Path(platformdirs.user_cache_dir(APP))


def config_dir() -> Path:
    """User settings: recent projects, theme."""
    return _override("STILLROOM_CONFIG_DIR") or Path(platformdirs.user_config_dir(APP))


def default_project_dir(name: str) -> Path:
    return data_dir() / name
