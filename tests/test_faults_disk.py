"""A disk that fills up half-way: the command fails with one error line naming the file and the
fix, and the files published before it are exactly as they were.

The full disk is real, with no mocks: the child process runs under a file-size limit
(RLIMIT_FSIZE, set with preexec_fn), so any write past the limit fails with EFBIG just where a
full disk would fail with ENOSPC. It needs no privileges and no mount, so it runs in CI. The
limit is per file, so each test picks it between the small files a command writes (settings,
sidecars, logs) and the large one that should fail (weights, shards, the download).
Checkpoints and predictions under a full disk are in test_faults_training.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from clirun import Result, bertctl, one_error_line
from httpserver import LoopbackServer

TINY = Path(__file__).resolve().parent / "fixtures" / "tf" / "tiny_release"


def limited(*args: object, file_limit: int) -> Result:
    """`bertctl ARGS` in a child whose files cannot grow past `file_limit` bytes."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("BERTCTL_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bertctl", *map(str, args)],
        capture_output=True,
        env=env,
        timeout=300,
        preexec_fn=limit_file_size,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (and every folder beside it) with its SHA-256."""
    files = {str(p.relative_to(folder.parent)): "" for p in folder.parent.iterdir()}
    for p in folder.rglob("*"):
        if p.is_file():
            files[str(p.relative_to(folder.parent))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def test_conversion_out_of_disk_keeps_the_previous_model(tmp_path):
    out = tmp_path / "models" / "tiny"
    assert bertctl("convert", str(TINY), "--out", str(out)).code == 0
    before = snapshot(out)
    limit = (out / "model.safetensors").stat().st_size // 2

    result = limited("convert", TINY, "--out", out, "--overwrite", file_limit=limit)
    assert result.code == 1
    error = one_error_line(result)
    assert f"cannot write the converted model beside {out}" in error
    assert "File too large" in error and "free some disk space" in error
    assert f"{out} was left as it was" in error
    assert snapshot(out) == before  # the old model, byte for byte, and no temp folder beside it


def test_pretraining_shards_out_of_disk_keep_the_previous_shards(tmp_path):
    corpus = tmp_path / "corpus.txt"
    rng = random.Random(3)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "warm",
        "mat",
        "while",
        "rain",
        "fell",
        "over",
        "old",
        "houses",
        "and",
        "dark",
        "hills",
    ]
    corpus.write_text(
        "\n\n".join(
            "\n".join(" ".join(rng.choices(words, k=10)) + "." for _ in range(8)) for _ in range(30)
        )
    )
    out = tmp_path / "data"
    assert bertctl("pretrain", "prepare", str(corpus), "--out", str(out)).code == 0
    before = snapshot(out)
    largest = max(p.stat().st_size for p in out.rglob("*.npy"))

    result = limited(
        "pretrain", "prepare", corpus, "--out", out, "--overwrite", file_limit=largest // 2
    )
    assert result.code == 1
    error = one_error_line(result)
    assert f"cannot write the shards beside {out}" in error and "free some disk space" in error
    assert snapshot(out) == before


def release_zip(padding: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"my_bert/{f.name}")
        zf.writestr("my_bert/NOTES.bin", padding)
    return buf.getvalue()


def test_download_out_of_disk_keeps_its_bytes_and_resumes(isolated_home):
    content = release_zip(random.Random(9).randbytes(3 << 20))
    with LoopbackServer() as server:
        url = server.add("/my_bert.zip", content)
        result = limited("download", url, file_limit=1 << 20)
        assert result.code == 1
        part = isolated_home / "downloads" / "my_bert.zip.part"
        error = one_error_line(result)
        assert f"cannot write {part}" in error and "File too large" in error
        assert "run again to resume" in error
        kept = part.read_bytes()
        assert len(kept) == 1 << 20 and kept == content[: len(kept)]
        assert json.loads(part.with_name(part.name + ".json").read_text())["size"] == len(content)

        again = bertctl("download", url)
        assert again.code == 0, again.stderr
        # the second run asked only for what the first could not write
        assert server.requests_for("/my_bert.zip")[-1].range == f"bytes={len(kept)}-"
    assert (isolated_home / "models" / "my_bert" / "model.safetensors").is_file()


@pytest.mark.parametrize("limit", [0, 64])
def test_tokenized_output_into_a_full_disk_is_an_error_not_a_short_file(tmp_path, limit):
    """stdout redirected onto a full disk: one error line and exit 1, never a file cut short
    with exit 0 (Python's buffered stdout takes a large write in part and says nothing)."""
    sink = tmp_path / "tokens.jsonl"
    text = tmp_path / "text.txt"
    text.write_text("John Smith went to Paris.\n" * 200)

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with sink.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "bertctl", "tokenize", "--input", str(text), "--json"],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
            preexec_fn=limit_file_size,
            timeout=120,
            check=False,
        )
    result = Result(proc.returncode, "", proc.stderr.decode())
    assert result.code == 1
    error = one_error_line(result)
    assert "cannot write the output" in error and "File too large" in error
    assert sink.stat().st_size == limit


def test_glue_submission_out_of_disk_keeps_the_previous_file(tmp_path):
    """What `bertctl predict` writes (GLUE's submission, Google's test_results.tsv) is published
    by rename: a full disk leaves the earlier file and no temp file."""
    from bertctl import glue

    path = tmp_path / "MRPC.tsv"
    glue.write_submission(path, glue.get_task("mrpc"), [0, 1, 1], indices=["0", "1", "2"])
    before = path.read_bytes()
    code = (
        "import sys\n"
        "from bertctl import glue\n"
        "try:\n"
        "    glue.write_submission(sys.argv[1], glue.get_task('mrpc'), [1] * 5000,"
        " indices=[str(i) for i in range(5000)])\n"
        "except glue.GlueError as exc:\n"
        "    print(exc.one_line(), file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 8, len(before) + 8))

    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        preexec_fn=limit_file_size,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.decode()
    assert f"cannot write {path}: File too large" in message and "free some disk space" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MRPC.tsv"]


def test_a_full_disk_no_command_expected_is_still_one_error_line(tmp_path):
    """inspect copies a zip's checkpoint index to a temporary file; no code there expects a
    full disk, and the entry point still turns it into one line instead of a traceback."""
    archive = tmp_path / "model.zip"
    archive.write_bytes(release_zip(b""))
    result = limited("inspect", archive, file_limit=64)
    assert result.code == 1
    error = one_error_line(result)
    assert error.startswith("error: no room on the disk") and "(File too large)" in error
    assert "free some disk space and run again" in error
