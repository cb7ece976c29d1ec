"""Where commands write: never over an input, --overwrite only on what bertctl made, one writer
per output, and a Ctrl-C that says what was kept.

Every case runs the real command on real files: the TF-written tiny release (as a folder and as
a zip), Google's sample_text.txt and the release vocab where the shared data lies.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from clirun import bertctl, in_process, one_error_line
from httpserver import LoopbackServer

from bertctl import outputs

TINY = Path(__file__).parent / "fixtures" / "tf" / "tiny_release"


def env() -> dict[str, str]:
    """The environment of a command started here: this test's BERTCTL_HOME, no colour."""
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


def release_zip(path: Path, folder: str = "my_bert", spoil: dict[str, bytes] | None = None) -> Path:
    """The tiny release as Google zips it (one folder inside), members replaced by `spoil`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(TINY.iterdir()):
            zf.writestr(f"{folder}/{f.name}", (spoil or {}).get(f.name, f.read_bytes()))
    return path


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def corpus(shared_data) -> Path:
    return shared_data / "sample_text.txt"


@pytest.fixture
def release_vocab(shared_data) -> Path:
    return shared_data / "vocab" / "uncased_vocab.txt"


# --------------------------------------------------------------------------------------------
# Never over an input
# --------------------------------------------------------------------------------------------


def test_convert_overwrite_into_the_folder_of_its_zip_deletes_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    zipped = release_zip(work / "release.zip")
    (work / "notes.txt").write_text("mine")
    before = listing(work)
    r = in_process("convert", zipped, "--out", work, "--overwrite")
    assert r.code == 1
    line = one_error_line(r)
    assert f"--out {work} holds the input {zipped}" in line and "pass a new folder" in line
    assert listing(work) == before  # the zip and the user's file, byte for byte


def test_convert_refuses_an_out_inside_or_equal_to_its_release_folder(tmp_path):
    release = tmp_path / "uncased_L-2_H-128_A-2"
    shutil.copytree(TINY, release)
    before = listing(release)
    r = in_process("convert", release, "--out", release / "hf")
    assert r.code == 1 and f"lies inside the input folder {release}" in one_error_line(r)
    r = in_process("convert", release / "bert_model.ckpt", "--out", release, "--overwrite")
    assert r.code == 1 and "holds the input" in one_error_line(r)
    assert listing(release) == before and not (release / "hf").exists()


def test_prepare_overwrite_never_deletes_its_corpus_or_vocab(tmp_path, corpus, release_vocab):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(corpus, work / "corpus.txt")
    shutil.copy(release_vocab, work / "vocab.txt")
    before = listing(work)
    args = ("pretrain", "prepare", "--dupe-factor", "1", "--overwrite")
    r = in_process(*args, work / "corpus.txt", "--out", work, "--vocab", release_vocab)
    assert r.code == 1 and f"holds the input {work / 'corpus.txt'}" in one_error_line(r)
    r = in_process(*args, corpus, "--out", work, "--vocab", work / "vocab.txt")
    assert r.code == 1 and f"holds the input {work / 'vocab.txt'}" in one_error_line(r)
    assert listing(work) == before


def test_overwrite_replaces_only_what_bertctl_made_and_names_the_rest(tmp_path, corpus):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("thesis.tex", "data.csv", "a.txt", "b.txt"):
        (mine / name).write_text(name)
    before = listing(mine)
    r = in_process("convert", TINY, "--out", mine, "--overwrite")
    assert r.code == 1
    assert "was not made by bertctl (no bertctl.json)" in one_error_line(r)
    r = in_process(
        "pretrain", "prepare", corpus, "--out", mine, "--vocab", TINY / "vocab.txt", "--overwrite"
    )
    assert r.code == 1 and "was not made by bertctl (no manifest.json)" in one_error_line(r)
    assert listing(mine) == before

    # A folder bertctl converted, with the user's notes added: refused, the notes named.
    ours = tmp_path / "ours"
    assert in_process("convert", TINY, "--out", ours).code == 0
    (ours / "notes.md").write_text("mine")
    r = in_process("convert", TINY, "--out", ours, "--overwrite")
    assert r.code == 1
    assert "holds files bertctl did not write there (notes.md)" in one_error_line(r)
    (ours / "notes.md").unlink()
    assert in_process("convert", TINY, "--out", ours, "--overwrite").code == 0
    assert (ours / "bertctl.json").is_file()
    assert not list(tmp_path.glob(".*"))  # no lock, temp or old folder left beside them


def test_download_into_a_dir_of_the_users_files_is_refused_before_any_byte(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    (target / "report.pdf").write_bytes(b"%PDF")
    with LoopbackServer() as server:
        url = server.add("/my_bert.zip", release_zip(tmp_path / "z.zip").read_bytes())
        r = in_process("download", url, "--dir", target)
        assert r.code == 1
        line = one_error_line(r)
        assert f"--dir {target} was not made by bertctl" in line
        assert server.requests_for("/my_bert.zip") == []
    assert listing(target) == {"report.pdf": b"%PDF"}


def test_errors_about_extracted_files_name_the_zip_member(tmp_path):
    zipped = release_zip(tmp_path / "release.zip", spoil={"bert_config.json": b"{not json"})
    r = in_process("convert", zipped, "--out", tmp_path / "out")
    assert r.code == 1
    line = one_error_line(r)
    assert f"{zipped}:my_bert/bert_config.json" in line, line
    assert "extract-" not in line and "tmp" not in line.replace(str(tmp_path), "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.zip"]


# --------------------------------------------------------------------------------------------
# One writer per output
# --------------------------------------------------------------------------------------------


def test_a_second_writer_of_one_output_is_refused_naming_the_first(tmp_path, corpus):
    """Another process holds the lock (this test, through the same call the commands use):
    convert and prepare to that --out fail at once, and the folder is as the first left it."""
    out = tmp_path / "out"
    with outputs.writing(out, "converted into"):
        r = bertctl("convert", str(TINY), "--out", str(out))
        assert r.code == 1
        line = one_error_line(r)
        assert f"{out} is being converted into by process {os.getpid()}" in line
        assert "wait for it to finish" in line
        r = bertctl(
            "pretrain",
            "prepare",
            str(corpus),
            "--out",
            str(out),
            "--vocab",
            str(TINY / "vocab.txt"),
        )
        assert r.code == 1 and f"by process {os.getpid()}" in one_error_line(r)
        assert not out.exists()
    assert not outputs.lock_path(out).exists()  # released, and removed
    assert bertctl("convert", str(TINY), "--out", str(out)).code == 0


def test_two_converts_racing_to_one_out_leave_one_whole_result(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bertctl", "convert", str(TINY), "--out", str(out)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    codes = sorted(code for code, _ in results)
    # Either both ran one after the other (the second then finds a full --out) or one was
    # refused by the lock; never two writers at once.
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "is being converted into" in refused or "exists and is not empty" in refused
    assert (out / "model.safetensors").is_file() and (out / "bertctl.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------------------------
# Ctrl-C says what was kept
# --------------------------------------------------------------------------------------------


def test_ctrl_c_while_converting_leaves_out_as_it_was(tmp_path, monkeypatch):
    from bertctl import convert as convert_module

    real = convert_module._write_safetensors

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, mid-way through the work
        time.sleep(5)

    monkeypatch.setattr(convert_module, "_write_safetensors", interrupted)
    out = tmp_path / "out"
    r = in_process("convert", TINY, "--out", out)
    assert r.code == 130
    line = one_error_line(r)
    assert line == (
        f"error: interrupted; nothing was written to {out}; run the command again to convert"
    )
    assert list(tmp_path.iterdir()) == []  # no half-built folder, no lock


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 60) -> tuple[int, str]:
    """Ctrl-C as a terminal sends it (to the whole process group) once `ready()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_ctrl_c_during_download_keeps_the_bytes_and_the_rerun_resumes(tmp_path, isolated_home):
    padding = os.urandom(4 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"my_bert/{f.name}")
        zf.writestr("my_bert/NOTES.bin", padding)
    content = buf.getvalue()
    part = isolated_home / "downloads" / "my_bert.zip.part"
    with LoopbackServer() as server:
        url = server.add("/my_bert.zip", content, rate=1 << 20)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bertctl", "download", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
            start_new_session=True,
        )
        code, err = _interrupt_when(proc, lambda: part.exists() and part.stat().st_size > 1 << 20)
        assert code == 130, err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert lines == [
            f"error: interrupted; the bytes downloaded so far are kept in "
            f"{isolated_home / 'downloads'} and the model folder is as it was; run the same "
            "command again to resume"
        ], err
        assert "Traceback" not in err
        kept = part.stat().st_size
        assert 0 < kept < len(content)
        server.set_faults("/my_bert.zip", rate=None)
        r = bertctl("download", url)
        assert r.code == 0, r.stderr
        assert server.bytes_sent["/my_bert.zip"] - len(content) < kept  # resumed, not refetched


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_prepare_leaves_out_as_it_was(tmp_path, corpus, release_vocab, workers):
    big = tmp_path / "big.txt"
    big.write_text((corpus.read_text(encoding="utf-8") + "\n") * 3000, encoding="utf-8")
    out = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bertctl",
            "pretrain",
            "prepare",
            str(big),
            "--out",
            str(out),
            "--vocab",
            str(release_vocab),
            "--workers",
            workers,
            "--shard-documents",
            "100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(),
        start_new_session=True,
    )
    partial = tmp_path / f".data.partial-{proc.pid}"
    code, err = _interrupt_when(proc, lambda: partial.exists() and any(partial.iterdir()))
    assert code == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines == [
        f"error: interrupted; nothing was written to {out}; run the command again to prepare"
    ], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


# --------------------------------------------------------------------------------------------
# A run folder holds a run and nothing else
# --------------------------------------------------------------------------------------------

MRPC = Path(__file__).parent / "fixtures" / "glue" / "MRPC"
FAST = ("--cpu", "--threads", "1", "--batch-size", "4", "--max-steps", "2")


@pytest.fixture
def model(tmp_path) -> Path:
    out = tmp_path / "micro-bert"
    assert in_process("convert", TINY, "--out", out).code == 0
    return out


def test_finetune_never_writes_a_run_into_its_model_or_data_folder(tmp_path, model):
    data = tmp_path / "MRPC"
    shutil.copytree(MRPC, data)
    before = {folder: listing(folder) for folder in (model, data)}
    base = ("finetune", "mrpc", "--data", data, "--model", model, *FAST)
    for out in (model, data):
        for extra in ((), ("--resume",)):
            r = in_process(*base, "--out", out, *extra)
            assert r.code == 1
            assert f"--out {out} is the input {out}" in one_error_line(r)
    r = in_process(*base, "--out", tmp_path)  # a folder that holds both
    assert r.code == 1 and "holds the input" in one_error_line(r)
    assert {folder: listing(folder) for folder in (model, data)} == before


def test_finetune_into_a_folder_of_other_files_is_refused_without_resume_advice(tmp_path, model):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = in_process("finetune", "mrpc", "--data", MRPC, "--model", model, "--out", out, *FAST)
    assert r.code == 1
    line = one_error_line(r)
    assert f"--out {out} holds files bertctl did not write (notes.txt)" in line
    assert "--resume" not in line  # resuming there would write a run among the user's files
    r = in_process("finetune", "mrpc", "--data", MRPC, "--model", model, "--out", out, "--resume")
    assert r.code == 1 and f"--resume: {out} holds no run" in one_error_line(r)
    assert listing(out) == {"notes.txt": b"mine"}


def test_finetune_out_is_checked_before_the_model_is_downloaded(tmp_path, monkeypatch):
    """--model tiny would be fetched from the mirror; the refusal comes first, with no request."""
    data = tmp_path / "MRPC"
    shutil.copytree(MRPC, data)
    with LoopbackServer() as server:
        monkeypatch.setenv("BERTCTL_MIRROR", server.url("/bert"))
        r = in_process("finetune", "mrpc", "--data", data, "--model", "tiny", "--out", data, *FAST)
        assert r.code == 1 and f"--out {data} is the input {data}" in one_error_line(r)
        assert server.requests_for("/bert/2020_02_20/uncased_L-2_H-128_A-2.zip") == []
        assert server.requests_for("/bert/2020_02_20/uncased_L-2_H-128_A-2.zip", "HEAD") == []


def test_a_second_resume_of_a_running_run_is_refused(tmp_path, model):
    out = tmp_path / "run"
    args = ("finetune", "mrpc", "--data", MRPC, "--model", model, *FAST)
    assert in_process(*args, "--out", out).code == 0
    from bertctl.train import runs

    with runs.locked(out):  # the first run, still writing
        r = bertctl("finetune", "--out", str(out), "--resume", "--cpu", "--threads", "1")
        assert r.code == 1
        assert f"the run {out} is being written by process {os.getpid()}" in one_error_line(r)
    r = in_process("finetune", "--out", out, "--resume", "--cpu", "--threads", "1")
    assert r.code == 0, r.stderr
    assert not outputs.lock_path(out).exists()


def test_pretrain_run_never_writes_into_its_data_or_model_and_locks_its_folder(
    tmp_path, model, corpus
):
    data = tmp_path / "data"
    prepare = ("pretrain", "prepare", corpus, "--vocab", TINY / "vocab.txt", "--dupe-factor", "1")
    assert in_process(*prepare, "--out", data).code == 0
    before = {folder: listing(folder) for folder in (model, data)}
    base = ("pretrain", "run", data, "--model", model, "--cpu", "--threads", "1", "--steps", "1")
    for out in (data, model):
        r = in_process(*base, "--out", out)
        assert r.code == 1 and f"--out {out} is the input {out}" in one_error_line(r)
    assert {folder: listing(folder) for folder in (model, data)} == before
    out = tmp_path / "run"
    with outputs.exclusive_lock(out, f"the run {out} is being written"):
        r = bertctl(*map(str, base), "--out", str(out))
        assert r.code == 1 and f"by process {os.getpid()}" in one_error_line(r)
    assert not out.exists()


def test_bert_base_dir_pointing_nowhere_is_named(tmp_path, monkeypatch):
    """Google's recipe sets BERT_BASE_DIR once; pointing nowhere, the variable is the culprit."""
    nowhere = tmp_path / "uncased_L-12_H-768_A-12"
    monkeypatch.setenv("BERT_BASE_DIR", str(nowhere))
    r = in_process("finetune", "mrpc", "--data", MRPC, "--out", tmp_path / "run", *FAST)
    assert r.code == 1
    line = one_error_line(r)
    assert line.startswith(f"error: BERT_BASE_DIR={nowhere}: no such folder")
    assert "pass --model" in line
    assert not (tmp_path / "run").exists()


def test_download_never_shows_or_stores_the_urls_password(tmp_path, isolated_home):
    with LoopbackServer() as server:
        url = server.add("/my_bert.zip", release_zip(tmp_path / "z.zip").read_bytes())
        secret = url.replace("http://", "http://me:hunter2@")
        r = bertctl("download", secret, "--json")
        assert r.code == 0, r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    assert "http://me:***@127.0.0.1" in r.stderr  # the step line still says where from
    stored = (isolated_home / "models" / "my_bert" / "bertctl.json").read_text()
    assert "hunter2" not in stored and "me:***@" in stored


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_tokenize_leaves_whole_lines_and_says_how_many(tmp_path, workers):
    import json
    import re

    big = tmp_path / "big.txt"
    big.write_text("the quick brown fox jumps over the lazy dog\n" * 400_000)
    output = tmp_path / "out.jsonl"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bertctl",
                "tokenize",
                "--input",
                str(big),
                "--json",
                "--workers",
                workers,
            ],
            stdout=sink,
            stderr=subprocess.PIPE,
            env=env(),
            start_new_session=True,
        )
        code, err = _interrupt_when(proc, lambda: output.stat().st_size > 1 << 20)
    assert code == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    found = re.fullmatch(
        r"error: interrupted after ([\d,]+) lines; the output holds those \1 lines, each whole; "
        r"to go on, tokenize from line ([\d,]+) \(tail -n \+\d+ .*big.txt \| bertctl tokenize "
        r"--input -\)",
        lines[0],
    )
    assert found, lines[0]
    written = output.read_text().splitlines()
    assert len(written) == int(found.group(1).replace(",", "")) < 400_000
    assert all(json.loads(line)["tokens"][0] == "the" for line in written)
