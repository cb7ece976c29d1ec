"""The local model store under BERTCTL_HOME: where each release lands and what state it is in.

Layout, per catalogue name:

    models/<name>/            an HF-format folder (config.json, model.safetensors, vocab.txt, ...)
    models/<name>/release/    the release files as Google shipped them
    models/<name>/bertctl.json  provenance: source URL, checks passed, file hashes
    models/hub--<org>--<name>/  a Hub repo (`hub:org/name`), the same HF-format layout
    downloads/<zip name>      the zip, and <zip name>.part while it downloads
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertctl import paths
from bertctl.catalog import Release
from bertctl.errors import UsageError

# Re-exported: the store's folders are swapped whole and its manifests written atomically, and
# many writers reach these through `store`.
from bertctl.outputs import replace_folder, write_json_atomic  # noqa: F401

MANIFEST = "bertctl.json"


def model_dir(name: str) -> Path:
    return paths.models_dir() / name


# --------------------------------------------------------------------------------------------
# Hub models: how `hub:ORG/NAME` is named and where it lands. Here, not in `hub`, so that
# resolving or verifying a model never imports the module that downloads and verifies one.

HUB_PREFIX = "hub:"
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    revision: str | None

    @property
    def store_name(self) -> str:
        """Folder name under the store: hub--org--name."""
        return "hub--" + self.repo_id.replace("/", "--")


def parse_hub(spec: str) -> HubModel:
    """`hub:org/name` or `hub:org/name@revision` -> HubModel."""
    body = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = body.partition("@")
    if not _REPO_RE.match(repo) or ".." in repo:
        raise UsageError(
            f"{spec!r} is not a Hub repo id",
            "write it as hub:ORG/NAME, e.g. hub:google-bert/bert-base-uncased",
        )
    return HubModel(repo, revision or None)


def hub_folder(model: HubModel) -> Path:
    """The store folder of a Hub model (whether or not it is downloaded)."""
    return model_dir(model.store_name)


# --------------------------------------------------------------------------------------------
# Catalogue models


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
