"""Size bounds: no single input makes bertctl's memory, disk or work grow without end.

Each reader stops at a stated bound (RELIABILITY.md, Size bounds) and says so in one line: a
settings file, a line of text or of a TSV, a vocab, a zip member, a download whose server does
not say how long it is, and flags whose value sets the work (--batch-size, --threads).

Inputs are real: /dev/zero, sparse files of gigabytes (no disk used), zips whose members
decompress past the bound, a loopback server that streams without end. Commands that would
exhaust memory before the fix run in a child process under RLIMIT_AS, so a regression fails
the test with a MemoryError instead of taking the machine down; downloads run under
RLIMIT_FSIZE where the test proves the part file never grows past the bound.
"""

from __future__ import annotations

import base64
import os
import resource
import signal
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import Result, one_error_line
from clirun import in_process as cli
from httpserver import LoopbackServer

from bertctl import fetch, memory
from bertctl.bertconfig import BertConfig
from bertctl.fetch import DownloadError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tf" / "tiny_release"
MRPC = FIXTURES / "glue" / "MRPC"
MiB = 1 << 20
TINY_PATH = "/bert/2020_02_20/uncased_L-2_H-128_A-2.zip"  # the catalogue's `tiny`


def limited(*args: object, memory_bytes: int = 3 << 30, file_bytes: int | None = None) -> Result:
    """`python -m bertctl ARGS` in a child whose address space (and file size) is capped."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))

    # One BLAS/OpenMP thread: each thread reserves address space, and the cap is for the input.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("BERTCTL_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bertctl", *map(str, args)],
        capture_output=True,
        env=env,
        timeout=300,
        preexec_fn=limit,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def error_of(result: Result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stderr[-2000:])
    return one_error_line(result)


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes: `head`, then NUL bytes that take no disk space."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


# --------------------------------------------------------------------------------------------
# Settings files


def test_a_settings_file_that_never_ends_is_refused_after_1_mib():
    # Before: read whole, 22 GB and then killed.
    error = error_of(limited("finetune", "mrpc", "--config", "/dev/zero"))
    assert "error: /dev/zero: stopped reading at 1 MiB" in error
    assert "pass a YAML file of settings to --config" in error


@pytest.mark.parametrize("command", ["finetune", "pretrain run"])
def test_a_run_config_of_gigabytes_on_resume_is_refused_unread(tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    config = sparse(run / "config.yaml", 4 << 30, b"task: mrpc\n")
    error = error_of(limited(*command.split(), "--out", run, "--resume"))
    assert f"error: {config}: stopped reading at 1 MiB" in error


def _run_with(tmp_path: Path, text: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: mrpc\n" + text)
    return run


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("batch_size: 0", "batch_size is 0 (--batch-size must be positive)"),
        ("lr: .nan", "lr is nan (--lr must be positive)"),
        ("threads: 100000", "threads is 100000 (--threads must be at most"),
        ("batch_size: 1000000000", "batch_size is 1000000000 (--batch-size must be at most 65536)"),
        ("gpu_memory: 12 parsecs", "gpu_memory is '12 parsecs' (--gpu-memory '12 parsecs'"),
        ("eval_batch_size: 100000", "eval_batch_size is 100000 (eval_batch_size must be at most"),
    ],
    ids=["zero-batch", "nan-lr", "threads", "huge-batch", "gpu-memory", "eval-batch"],
)
def test_a_bad_value_in_a_resumed_run_config_names_the_file_and_key(tmp_path, setting, words):
    run = _run_with(tmp_path, setting + "\n")
    key = setting.partition(":")[0]
    error = error_of(cli("finetune", "--out", run, "--resume"), code=2)
    assert error.startswith(f"error: {run / 'config.yaml'}: {words}"), error
    assert f"fix {key} in {run / 'config.yaml'}" in error


def test_a_rule_between_a_flag_and_the_run_config_names_both(tmp_path):
    run = _run_with(tmp_path, "grad_accum: 3\n")
    error = error_of(cli("finetune", "--out", run, "--resume", "--batch-size", 32), code=2)
    assert f"{run / 'config.yaml'}: grad_accum is 3, with --batch-size 32" in error
    assert "fix grad_accum in" in error and "or pass --grad-accum to override it" in error


def test_a_bad_flag_on_resume_is_still_blamed_on_the_flag(tmp_path):
    run = _run_with(tmp_path, "batch_size: 32\n")
    error = error_of(cli("finetune", "--out", run, "--resume", "--batch-size", 0), code=2)
    assert error == "error: --batch-size must be positive"


# --------------------------------------------------------------------------------------------
# Lines: tokenize --input and GLUE TSVs


def test_tokenize_a_line_that_never_ends_is_refused_after_1_mib():
    # Before: `for line in file` held the whole line; /dev/zero has none.
    error = error_of(limited("tokenize", "--input", "/dev/zero"))
    assert error.startswith("error: /dev/zero line 1 is longer than 1 MiB")
    assert "split the file into lines" in error


def test_tokenize_names_the_long_line_and_accepts_one_at_the_bound(tmp_path):
    text = tmp_path / "corpus.txt"
    at_bound = b"a" * MiB  # exactly the bound (its line break not counted): read
    text.write_bytes(b"John Smith\n" + at_bound + b"\nhello\n")
    result = cli("tokenize", "--input", text)
    assert result.code == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["john smith", "[UNK]", "hello"]
    text.write_bytes(b"John Smith\nhello\n" + at_bound + b"a\nbye\n")
    error = error_of(cli("tokenize", "--input", text))
    assert error.startswith(f"error: {text} line 3 is longer than 1 MiB")


def test_a_glue_tsv_line_of_gigabytes_is_refused_after_1_mib(tmp_path):
    data = tmp_path / "MRPC"
    data.mkdir()
    for name in ("dev.tsv", "test.tsv"):
        (data / name).write_bytes((MRPC / name).read_bytes())
    header = (MRPC / "train.tsv").read_bytes().split(b"\n", 1)[0] + b"\n"
    train = sparse(data / "train.tsv", 4 << 30, header)  # line 2: 4 GiB without a line break
    out = tmp_path / "run"
    args = ["finetune", "mrpc", "--data", data, "--model", TINY, "--cpu", "--out", out]
    error = error_of(limited(*args, "--max-steps", 1))
    assert error.startswith(f"error: {train} line 2 is longer than 1 MiB")
    assert "each row of a TSV is one line" in error
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Vocabs and zip members


def test_a_vocab_that_never_ends_is_refused_after_16_mib():
    error = error_of(limited("tokenize", "John", "--vocab", "/dev/zero"))
    assert error.startswith("error: /dev/zero is larger than 16 MiB, far more than a vocab holds")


def test_a_vocab_of_exactly_16_mib_is_read_and_one_byte_more_is_not(tmp_path):
    vocab = tmp_path / "vocab.txt"
    specials = b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
    lines = specials + b"".join(b"%099d\n" % i for i in range(16 * MiB // 100 - 1))
    vocab.write_bytes(lines + b"x" * (16 * MiB - len(lines) - 1) + b"\n")
    assert vocab.stat().st_size == 16 * MiB
    result = cli("tokenize", "John", "--vocab", vocab)
    assert result.code == 0, result.stderr
    vocab.write_bytes(vocab.read_bytes() + b"y")
    error = error_of(cli("tokenize", "John", "--vocab", vocab))
    assert f"{vocab} is larger than 16 MiB" in error


def test_a_vocab_of_two_million_tokens_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[UNK]\n" + b"".join(b"%x\n" % i for i in range(2_000_000)))  # 14 MB
    error = error_of(cli("tokenize", "John", "--vocab", vocab))
    assert f"{vocab} has 2,000,001 lines, more than 1,048,576 tokens" in error


def _release_zip(path: Path, vocab: bytes) -> Path:
    """A release zip of the tiny fixture whose vocab.txt is `vocab`, deflated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in sorted(TINY.iterdir()):
            data = vocab if f.name == "vocab.txt" else f.read_bytes()
            zf.writestr(f"m/{f.name}", data)
    return path


def test_convert_refuses_an_oversized_vocab_member_before_extracting(tmp_path):
    # 17 MiB that deflate to about 20 kB: `inspect` refused it, `convert` extracted it.
    vocab = (TINY / "vocab.txt").read_bytes() + b"\n" * (17 * MiB)
    zip_path = _release_zip(tmp_path / "model.zip", vocab)
    assert zip_path.stat().st_size < MiB
    out = tmp_path / "out"
    error = error_of(cli("convert", zip_path, "--out", out))
    assert f"{zip_path}: refusing member 'm/vocab.txt': it holds {len(vocab):,} bytes" in error
    assert "more than the 16,777,216 a vocab.txt may hold" in error
    assert "nothing was extracted" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]  # no out, no temp
    error = error_of(cli("inspect", zip_path))  # refused from the size the zip records, unread
    assert (
        f"{zip_path}: m/vocab.txt claims {len(vocab):,} bytes, far more than such a file" in error
    )


def test_convert_refuses_a_zip_whose_files_cannot_fit_on_the_disk(tmp_path):
    zip_path = tmp_path / "model.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(TINY.iterdir()):
            zf.writestr(f"m/{f.name}", f.read_bytes())
        # The central directory, written on close, then says the checkpoint holds an exbibyte
        # (a zip64 size), more than any disk has free; its bytes are the fixture's.
        data = next(i for i in zf.filelist if ".data-" in i.filename)
        data.file_size = 1 << 60
    out = tmp_path / "out"
    error = error_of(cli("convert", zip_path, "--out", out))
    need = sum(i.file_size for i in zipfile.ZipFile(zip_path).infolist())
    assert f"cannot extract {zip_path}: its files take {need:,} bytes" in error
    assert "free some space" in error and "nothing was extracted" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


# --------------------------------------------------------------------------------------------
# Downloads


class _Endless(BaseHTTPRequestHandler):
    """Zeros without end and without Content-Length (a close-delimited body), or, for a path
    ending in /chunked.zip, chunks without end under a Content-Length of 1000 that lies."""

    protocol_version = "HTTP/1.0"
    sent: dict[str, int]
    auth: list[str | None]
    safety = 512 * MiB  # stop even if the client never does, so a regression ends

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.auth.append(self.headers.get("Authorization"))
        chunked = self.path.endswith("/chunked.zip")
        if chunked:
            self.protocol_version = "HTTP/1.1"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Content-Length", "1000")
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"\0" * (256 << 10)
        piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        try:
            while self.sent.get(self.path, 0) < self.safety:
                self.wfile.write(piece)
                self.sent[self.path] = self.sent.get(self.path, 0) + len(block)
        except OSError:
            return  # the client stopped reading: what is being tested


@pytest.fixture
def endless():
    handler = type("Handler", (_Endless,), {"sent": {}, "auth": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02})
    thread.daemon = True
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    httpd.handler = handler  # type: ignore[attr-defined]
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_body_without_a_size_stops_at_what_the_catalogue_expects(endless, tmp_path):
    bound, name = fetch.promised_size(TINY_PATH)  # type: ignore[misc]
    assert name == "tiny" and 17 * MiB < bound < 40 * MiB  # a 17.6 MB checkpoint, plus margins
    dest = tmp_path / "dl" / "tiny.zip"
    with pytest.raises(DownloadError) as info:
        fetch.download(endless.base + TINY_PATH, dest, retries=1, backoff=0.01)
    message = info.value.one_line()
    assert "the server announced no size and sent more than" in message
    assert "the most bertctl expects of tiny's zip" in message and "nothing was kept" in message
    assert _left(dest.parent) == []  # no part file, sidecar or lock
    # The client stopped reading at the bound (the socket buffers hold a few MiB more).
    assert endless.handler.sent[TINY_PATH] < bound + 32 * MiB


def test_cli_download_from_an_endless_mirror_never_grows_the_part_past_the_bound(
    endless, isolated_home
):
    bound, _ = fetch.promised_size(TINY_PATH)  # type: ignore[misc]
    # Under this file-size limit a part file one byte past the bound fails with EFBIG
    # ("cannot write"), so the message below proves it never got there.
    args = ["download", "tiny", "--mirror", endless.base + "/bert/"]
    error = error_of(limited(*args, file_bytes=bound))
    assert error.startswith(f"error: download of {endless.base + TINY_PATH} stopped: the")
    assert "announced no size" in error and "cannot write" not in error
    assert _left(isolated_home / "downloads") == []


def test_a_body_longer_than_its_content_length_is_stopped(endless, tmp_path):
    dest = tmp_path / "dl" / "chunked.zip"
    with pytest.raises(DownloadError) as info:
        fetch.download(endless.base + "/x/chunked.zip", dest, retries=1, backoff=0.01)
    assert "the server sent more than the 1.0 kB it announced" in info.value.one_line()
    assert _left(dest.parent) == []


def test_a_body_without_a_size_of_no_release_stops_at_the_general_bound(
    endless, tmp_path, monkeypatch
):
    monkeypatch.setattr(fetch, "MAX_UNANNOUNCED_BYTES", 3 * MiB)  # 8 GiB would take a while
    dest = tmp_path / "dl" / "custom.zip"
    with pytest.raises(DownloadError) as info:
        fetch.download(endless.base + "/custom.zip", dest, retries=1, backoff=0.01)
    assert "announced no size and sent more than 3.1 MB, more than any BERT release" in str(
        info.value
    )
    assert _left(dest.parent) == []


def test_max_size_bounds_a_body_without_a_size(endless, tmp_path):
    dest = tmp_path / "dl" / "tiny.zip"
    with pytest.raises(DownloadError) as info:
        fetch.download(endless.base + TINY_PATH, dest, max_size=MiB, retries=1, backoff=0.01)
    assert "sent more than 1.0 MB, the most expected of it" in str(info.value)


def test_a_password_in_the_url_is_never_shown(tmp_path):
    with LoopbackServer() as server:
        missing = server.url("/missing.zip").replace("http://", "http://me:hunter2@")
        with pytest.raises(DownloadError) as info:
            fetch.download(missing, tmp_path / "a.zip", retries=0)
        assert "HTTP 404" in str(info.value) and "http://me:***@127.0.0.1" in str(info.value)
        assert "hunter2" not in str(info.value)
    with pytest.raises(DownloadError) as info:  # the server is gone: refused, then given up
        fetch.download(missing, tmp_path / "b.zip", retries=1, backoff=0.01)
    assert "failed after 2 tries" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(DownloadError) as info:
        fetch.check_url_allowed("http://me:hunter2@example.com/m.zip")
    assert "http://me:***@example.com/m.zip" in str(info.value)
    assert fetch.redact("https://token@host/m.zip") == "https://***@host/m.zip"


def test_a_password_in_the_url_is_sent_as_basic_auth_and_not_past_a_redirect(endless, tmp_path):
    url = endless.base.replace("http://", "http://me:hunter2@") + "/x/custom.zip"
    with pytest.raises(DownloadError):
        fetch.download(url, tmp_path / "a.zip", max_size=MiB, retries=0)
    assert endless.handler.auth == ["Basic " + base64.b64encode(b"me:hunter2").decode()]
    with LoopbackServer() as server:
        hop = server.redirect("/hop.zip", endless.base + "/y/custom.zip")
        with pytest.raises(DownloadError):
            hop = hop.replace("http://", "http://me:hunter2@")
            fetch.download(hop, tmp_path / "b.zip", max_size=MiB, retries=0)
    assert endless.handler.auth[1] is None  # another host: the credentials stay behind


# --------------------------------------------------------------------------------------------
# Work that grows with a flag's value


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "base-uncased", "--gpu-memory", "12GiB", "--batch-size", 10**9],
        ["finetune", "mrpc", "--batch-size", 10**9],
        ["pretrain", "run", "data", "--batch-size", 10**9],
    ],
    ids=["plan", "finetune", "pretrain"],
)
def test_an_absurd_batch_is_refused_up_front(args):
    # Before: `plan --batch-size 1000000000` searched divisors one by one for minutes.
    error = error_of(cli(*args), code=2)
    assert "--batch-size" in error and "65536" in error


@pytest.mark.parametrize("command", [["finetune", "mrpc"], ["pretrain", "run", "data"]])
def test_absurd_threads_are_refused_up_front(command):
    # Before: torch.set_num_threads(100000) crashed or hung.
    limit = 4 * (os.cpu_count() or 1)
    error = error_of(cli(*command, "--threads", 100_000), code=2)
    assert "--threads" in error and str(limit) in error
    error_of(cli(*command, "--threads", limit + 1), code=2)


def _counting(monkeypatch) -> list[int]:
    """Count calls of the real memory estimate."""
    calls: list[int] = []
    real = memory.estimate

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(memory, "estimate", counted)
    return calls


def test_the_accumulation_search_takes_logarithmically_many_estimates(monkeypatch):
    base = BertConfig(vocab_size=30522, type_vocab_size=2)
    budget = memory.usable(12 << 30)
    batch = 65520  # 120 divisors: a linear search made over 200 estimates here
    calls = _counting(monkeypatch)
    found = memory.fit(base, memory.Settings(batch, 128, "fp32"), budget, bf16=False)
    assert len(calls) <= 40, len(calls)
    best = found[0].settings
    # The answer a linear search finds: the smallest accumulation that divides and fits.
    fits = [
        d
        for d in range(1, batch + 1)
        if batch % d == 0
        and memory.estimate(base, batch // d, 128, "fp32", grad_accum=d).total <= budget
    ]
    assert best.grad_accum == fits[0]


def test_auto_fit_with_the_largest_batch_is_quick_to_decide(monkeypatch):
    import torch

    from bertctl import ui
    from bertctl.train import preflight
    from bertctl.train.config import FinetuneConfig

    cfg = FinetuneConfig(batch_size=65520, model="large-uncased", gpu_memory="12GiB", auto_fit=True)
    calls = _counting(monkeypatch)
    fitted, checked = preflight.check(cfg, torch.device("cpu"), ui.Reporter())
    assert checked and fitted.batch_size == 65520 and fitted.grad_accum > 1
    assert len(calls) <= 40, len(calls)


def test_divisors_are_exact():
    for n in (1, 2, 12, 36, 97, 65520, 65536):
        assert memory._divisors(n) == [d for d in range(1, n + 1) if n % d == 0]
