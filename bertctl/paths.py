"""Where bertctl keeps things: BERTCTL_HOME, else the XDG cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def expand(value: str | Path) -> Path:
    """A path with `~` and `~user` expanded as a shell would; `~name` for a user that does not
    exist stays as written (pathlib raises RuntimeError for it), so it fails later as a plain
    missing file with a clear message."""
    path = Path(value)
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def home() -> Path:
    """The cache root: $BERTCTL_HOME, else $XDG_CACHE_HOME/bertctl, else ~/.cache/bertctl."""
    explicit = os.environ.get("BERTCTL_HOME")
    if explicit:
        return expand(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = expand(xdg) if xdg else Path.home() / ".cache"
    return base / "bertctl"


def home_setting() -> str:
    """Where the home folder comes from, for a message that blames it: the variable the user
    set (`BERTCTL_HOME=…`, `XDG_CACHE_HOME=…`), else the default folder."""
    for variable in ("BERTCTL_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(variable):
            return f"{variable}={os.environ[variable]}"
    return f"the home folder {home()} (BERTCTL_HOME is not set)"


def models_dir() -> Path:
    """Downloaded and converted models, one folder per catalogue name."""
    return home() / "models"


def downloads_dir() -> Path:
    """Release zips and their partial downloads."""
    return home() / "downloads"
