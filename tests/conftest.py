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


# --------------------------------------------------------------------------------------------
# Slow tests: one switch


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` (`@pytest.mark.slow(reason=...)`) run only when `-m` names them,
    as in `python -m pytest -m slow`; a plain run skips them, saying so."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            why = marker.kwargs.get("reason", "a long run")
            item.add_marker(pytest.mark.skip(reason=f"{why}: select it with -m slow"))


# --------------------------------------------------------------------------------------------
# Fixtures several test files share


@pytest.fixture
def server():
    """A loopback HTTP server serving what a test adds (see httpserver.py)."""
    from httpserver import LoopbackServer

    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): a
    2-core machine shared with other work runs tiny models fastest so, and runs in this process
    and in subprocesses compute alike."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A BERTCTL_HOME for a module's shared runs and models (each test still gets its own
    `isolated_home` later), and no GLUE_DIR or BERT_BASE_DIR."""
    path = tmp_path_factory.mktemp("module_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BERTCTL_HOME", str(path))
        mp.delenv("GLUE_DIR", raising=False)
        mp.delenv("BERT_BASE_DIR", raising=False)
        mp.setenv("MPLCONFIGDIR", str(path / "matplotlib"))  # curves.png: no cache in ~
        yield path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, home) -> Path:
    """The tiny TF release (2 layers, hidden 32) converted to an HF-format folder, as a user
    would convert it; one per module."""
    from clirun import in_process

    out = tmp_path_factory.mktemp("models") / "micro-bert"
    result = in_process("convert", FIXTURES / "tf" / "tiny_release", "--out", out)
    assert result.code == 0, result.stderr
    return out
