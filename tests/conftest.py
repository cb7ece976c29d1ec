"""Shared fixtures: real data read where it lies, an isolated BERTCTL_HOME for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data_dir() -> Path:
    """The folder of real data beside the checkout (`../shared/data`), or BERTCTL_SHARED_DATA."""
    override = os.environ.get("BERTCTL_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real data that no one here wrote; tests that need it skip on a clone without it."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not present (set BERTCTL_SHARED_DATA to use one)")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own BERTCTL_HOME so caches never leak between tests or into ~."""
    home = tmp_path_factory.mktemp("bertctl_home")
    monkeypatch.setenv("BERTCTL_HOME", str(home))
    monkeypatch.delenv("BERT_BASE_DIR", raising=False)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    return home
