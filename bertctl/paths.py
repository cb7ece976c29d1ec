"""Where bertctl keeps things: BERTCTL_HOME, else the XDG cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root: $BERTCTL_HOME, else $XDG_CACHE_HOME/bertctl, else ~/.cache/bertctl."""
    explicit = os.environ.get("BERTCTL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bertctl"


def models_dir() -> Path:
    """Downloaded and converted models, one folder per catalogue name."""
    return home() / "models"


def downloads_dir() -> Path:
    """Release zips and their partial downloads."""
    return home() / "downloads"
