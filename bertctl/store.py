"""The local model store under BERTCTL_HOME: where each release lands and what state it is in.

Layout, per catalogue name:

    models/<name>/            an HF-format folder (config.json, model.safetensors, vocab.txt, ...)
    models/<name>/release/    the release files as Google shipped them
    models/<name>/bertctl.json  provenance: source URL, checks passed, file hashes
    downloads/<zip name>      the zip, and <zip name>.part while it downloads
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bertctl import paths
from bertctl.catalog import Release
from bertctl.outputs import replace_folder  # noqa: F401  (the store's folders are swapped whole)

MANIFEST = "bertctl.json"


def model_dir(name: str) -> Path:
    return paths.models_dir() / name


def find_local(name: str) -> Path | None:
    """The store folder named `name` (a catalogue name, a zip stem, hub--org--name), if present."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = model_dir(name)
    return folder if (folder / MANIFEST).is_file() else None


def zip_path(release: Release) -> Path:
    return paths.downloads_dir() / release.path.rsplit("/", 1)[1]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The provenance record of a model folder, or None when absent or unreadable."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a model's manifest is not secret
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def status(release: Release) -> str:
    """'verified', 'downloaded' (not verified), 'partial 42%', or '' when nothing is here."""
    manifest = read_manifest(model_dir(release.name))
    if manifest is not None:
        return "verified" if manifest.get("verified") else "downloaded"
    part = zip_path(release).with_name(zip_path(release).name + ".part")
    if zip_path(release).is_file():
        return "zip downloaded"
    if part.is_file():
        total = None
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            total = json.loads(part.with_name(part.name + ".json").read_text()).get("size")
        size = part.stat().st_size
        return f"partial {100 * size / total:.0f}%" if total else "partial"
    return ""
