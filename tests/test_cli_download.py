"""`bertctl download` / `verify` / `models` end to end, against a loopback server the test starts."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from clirun import bertctl, one_error_line

TINY = Path(__file__).parent / "fixtures" / "tf" / "tiny_release"


def release_zip(folder: str | None = "my_bert", extra: dict[str, bytes] | None = None) -> bytes:
    """A zip in release layout built from the TF-written tiny fixture."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"{folder}/{f.name}" if folder else f.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_without_config() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("my_bert/vocab.txt", "[UNK]\n")
    return buf.getvalue()


def test_download_by_url_converts_and_is_a_noop_the_second_time(server, isolated_home):
    url = server.add("/models/my_bert.zip", release_zip())
    r = bertctl("download", url, "--json")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    folder = Path(result["folder"])
    assert folder == isolated_home / "models" / "my_bert"
    assert result["verified"] is True and result["already_present"] is False
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        assert (folder / name).is_file()
    assert (folder / "release" / "bert_model.ckpt.index").is_file()
    assert not list((isolated_home / "downloads").glob("*"))  # the zip is not kept by default
    sent = server.bytes_sent["/models/my_bert.zip"]

    r = bertctl("download", url)
    assert r.code == 0
    assert "already downloaded and verified; nothing to do" in r.stderr
    assert server.bytes_sent["/models/my_bert.zip"] == sent  # no second transfer

    # the model is now usable by name everywhere
    assert bertctl("verify", "my_bert").code == 0
    r = bertctl("tokenize", "the", "--model", "my_bert", "--json")
    assert r.code == 0 and json.loads(r.stdout)["tokens"] == ["the"]


def test_both_zip_layouts_and_dir_option(server, tmp_path):
    url = server.add("/flat.zip", release_zip(folder=None))
    r = bertctl("download", url, "--dir", str(tmp_path / "here"), "--keep-zip")
    assert r.code == 0, r.stderr
    assert (tmp_path / "here" / "model.safetensors").is_file()
    assert f"model    {tmp_path / 'here'}" in r.stdout


def test_mirror_swaps_the_base_url(server):
    # A mirror that holds the wrong bytes under tiny's path: the download goes to the mirror,
    # then verification refuses the config, naming it, and deletes the zip.
    server.add("/bert/2020_02_20/uncased_L-2_H-128_A-2.zip", release_zip(folder=None))
    r = bertctl("download", "tiny", "--mirror", server.url("/bert/"))
    assert r.code == 1
    line = one_error_line(r)
    assert "bert_config.json" in line and "hidden_size 32 (the release has 128)" in line
    assert server.requests_for("/bert/2020_02_20/uncased_L-2_H-128_A-2.zip")
    r = bertctl("download", "tiny", env={"BERTCTL_MIRROR": server.url("/bert")})
    assert (
        r.code == 1 and len(server.requests_for("/bert/2020_02_20/uncased_L-2_H-128_A-2.zip")) == 2
    )


def test_flipped_byte_names_the_tensor(server, isolated_home):
    data = bytearray(release_zip())
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo("my_bert/bert_model.ckpt.data-00000-of-00001")
    # A stored member: its bytes start after the local header (30 bytes + name + extra).
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF  # byte 5 of the data file: the first tensor by offset
    url = server.add("/my_bert.zip", bytes(data))
    r = bertctl("download", url)
    assert r.code == 1
    line = one_error_line(r)
    assert "failed verification" in line and "zip was deleted" in line
    r2 = bertctl("verify", str(_save(bytes(data), isolated_home / "copy.zip")), "--json")
    assert r2.code == 1
    failed = [
        c for rep in json.loads(r2.stdout)["reports"] for c in rep["checks"] if c["ok"] is False
    ]
    assert any(
        c["name"] == "tensor crc32c" and c["target"].startswith(("bert/", "cls/")) for c in failed
    )
    assert any(c["name"] == "zip crc" for c in failed)


def _save(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (release_zip(extra={"../evil.txt": b"x"}), "evil"),
        (release_zip(folder=None)[:-200], "my_bert.zip"),  # truncated zip
        (zip_without_config(), "no bert_config.json"),
    ],
    # short ids: pytest would otherwise spell the zip bytes into the test id, and the id travels
    # to child processes in PYTEST_CURRENT_TEST, past the kernel's limit for one variable
    ids=["zip-slip", "truncated", "no-config"],
)
def test_bad_zips_fail_cleanly(server, isolated_home, content, phrase):
    url = server.add("/my_bert.zip", content)
    r = bertctl("download", url)
    assert r.code == 1
    assert phrase in one_error_line(r)
    assert not (isolated_home / "models" / "my_bert").exists()


def test_too_little_disk_space_fails_before_any_byte(server, isolated_home):
    url = server.add("/huge.zip", b"PK", announce_length=2**60)
    r = bertctl("download", url)
    assert r.code == 1
    assert "free" in one_error_line(r)
    downloads = isolated_home / "downloads"
    assert not downloads.exists() or all(p.stat().st_size == 0 for p in downloads.iterdir())


def test_plain_http_refused_off_loopback():
    r = bertctl("download", "http://example.invalid/bert/my.zip")
    assert r.code == 1
    assert "--allow-http" in one_error_line(r)


def test_unknown_name_and_bundle():
    r = bertctl("download", "base-uncasd")
    assert r.code == 1 and "did you mean base-uncased?" in one_error_line(r)
    assert bertctl("download", "all-small").code == 2


def test_kill_9_then_rerun_resumes(server, isolated_home):
    padding = os.urandom(6 << 20)
    content = release_zip(extra={"my_bert/NOTES.bin": padding})
    url = server.add("/my_bert.zip", content, rate=2 << 20)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertctl", "download", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    part = isolated_home / "downloads" / "my_bert.zip.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < (2 << 20)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = part.stat().st_size
    assert 0 < kept < len(content)
    server.set_faults("/my_bert.zip", rate=None)
    r = bertctl("download", url)
    assert r.code == 0, r.stderr
    assert server.bytes_sent["/my_bert.zip"] - len(content) < (1 << 20)
    assert (isolated_home / "models" / "my_bert" / "model.safetensors").is_file()


def test_models_lists_every_release_with_state(server):
    r = bertctl("models", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert len(rows) == 34
    assert rows["base-uncased"]["parameters"] == 110_106_428
    assert rows["tiny"]["folder"] == "uncased_L-2_H-128_A-2"
    assert rows["base-multilingual-cased"]["zip_bytes"] == 662_903_077
    assert all(row["status"] == "" for row in rows.values())
    r = bertctl("models")
    assert r.code == 0 and "base-multilingual-cased" in r.stdout


# --------------------------------------------------------------------------------------------
# The Hugging Face Hub route, offline, from a pre-populated cache
# --------------------------------------------------------------------------------------------


def _hub_cache(hf_home: Path, repo: str, files: dict[str, Path | bytes]) -> None:
    """Lay files out as huggingface_hub's cache does: refs/main -> snapshots/<commit>/."""
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, snap / name)
        else:
            (snap / name).write_bytes(content)


@pytest.fixture
def converted_tiny(tmp_path) -> Path:
    out = tmp_path / "tiny_hf"
    r = bertctl("convert", str(TINY), "--out", str(out))
    assert r.code == 0, r.stderr
    return out


def test_hub_route_offline_cache(tmp_path, converted_tiny, isolated_home):
    hf_home = tmp_path / "hf"
    files = {
        n: converted_tiny / n
        for n in ("config.json", "vocab.txt", "model.safetensors", "tokenizer_config.json")
    }
    _hub_cache(hf_home, "acme/tiny-bert", files)
    gpt = json.loads((converted_tiny / "config.json").read_text())
    gpt["model_type"] = "gpt2"
    _hub_cache(hf_home, "acme/not-bert", {**files, "config.json": json.dumps(gpt).encode()})
    _hub_cache(
        hf_home,
        "acme/pickled",
        {"config.json": converted_tiny / "config.json", "vocab.txt": converted_tiny / "vocab.txt"},
    )
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}

    r = bertctl("download", "hub:acme/tiny-bert", "--json", env=env)
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["source"] == "hub:acme/tiny-bert" and result["verified"] is True
    assert bertctl("verify", "hub:acme/tiny-bert", env=env).code == 0
    # tokenize cannot tell the two sources apart
    a = bertctl("tokenize", "the cat", "--model", "hub:acme/tiny-bert", "--json", env=env)
    b = bertctl("tokenize", "the cat", "--model", str(converted_tiny), "--json")
    assert json.loads(a.stdout)["ids"] == json.loads(b.stdout)["ids"]

    r = bertctl("download", "hub:acme/not-bert", env=env)
    assert r.code == 1 and "is not a BERT model (model_type 'gpt2')" in one_error_line(r)
    r = bertctl("download", "hub:acme/pickled", env=env)
    assert r.code == 1 and "never unpickles" in one_error_line(r)
    r = bertctl("download", "hub:acme/absent", env=env)
    assert r.code == 1 and "not in the local Hugging Face cache" in one_error_line(r)
    assert not (isolated_home / "models" / "hub--acme--not-bert").exists()
