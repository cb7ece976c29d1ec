"""bertctl.fetch against a real loopback server: resume, retry, restart, refuse. No mocks."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bertctl import fetch
from bertctl.fetch import (
    DownloadError,
    PartState,
    Reply,
    check_url_allowed,
    decide,
    download,
    if_range_validator,
    parse_content_range,
    resume_headers,
    resume_offset,
    retry_delay,
)

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
FAST = {"backoff": 0.01, "timeout": 5.0}  # tries come quickly; nothing here waits on a real net


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def data() -> bytes:
    return random_bytes(4 * MiB + 12345, seed=1)


def leftovers(dest: Path) -> list[str]:
    """Files beside `dest` other than `dest` itself: part, sidecar, lock, temp files."""
    return sorted(p.name for p in dest.parent.iterdir() if p != dest)


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sidecar_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


# -- whole downloads ----------------------------------------------------------------------------


def test_full_download(server, data, tmp_path):
    url = server.add("/m.zip", data)
    dest = tmp_path / "sub" / "m.zip"
    progress: list[tuple[int, int | None]] = []
    result = download(url, dest, on_progress=lambda done, total: progress.append((done, total)))
    assert dest.read_bytes() == data
    assert leftovers(dest) == []  # part, sidecar and lock all gone
    assert result.size == result.fetched == len(data)
    assert (result.resumed_from, result.restarted, result.already_complete) == (0, False, False)
    assert result.etag and result.last_modified
    assert progress[0] == (0, len(data)) and progress[-1] == (len(data), len(data))
    assert progress == sorted(progress)
    assert server.bytes_sent["/m.zip"] == len(data)


def test_already_complete_makes_no_request(server, data, tmp_path):
    url = server.add("/m.zip", data)
    dest = tmp_path / "m.zip"
    download(url, dest)
    before = len(server.requests)
    result = download(url, dest)
    assert result.already_complete and result.fetched == 0 and result.size == len(data)
    assert len(server.requests) == before


def test_part_complete_on_disk_is_finished_without_network(server, data, tmp_path):
    """A crash between the last byte and the rename: the next call only renames."""
    url = server.add("/m.zip", data)
    dest = tmp_path / "m.zip"
    part_of(dest).write_bytes(data)
    state = {"url": url, "size": len(data), "etag": '"x"', "last_modified": None}
    sidecar_of(dest).write_text(json.dumps(state))
    result = download(url, dest)
    assert dest.read_bytes() == data and server.requests == []
    assert result.resumed_from == len(data) and result.fetched == 0


# -- resume and retry ---------------------------------------------------------------------------


def test_resume_after_dropped_connection(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=MiB)
    dest = tmp_path / "m.zip"
    result = download(url, dest, **FAST)
    assert dest.read_bytes() == data
    gets = server.requests_for("/m.zip")
    assert [g.status for g in gets] == [200, 206]
    assert gets[1].range == f"bytes={MiB}-" and gets[1].if_range == result.etag
    assert server.bytes_sent["/m.zip"] == len(data)  # not one byte fetched twice
    assert not result.restarted


def test_connection_reset_mid_body_resumes(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=MiB, drop_reset=True)
    dest = tmp_path / "m.zip"
    download(url, dest, **FAST)
    assert dest.read_bytes() == data
    assert server.requests_for("/m.zip")[1].range is not None


def test_repeated_drops_finish_while_each_try_makes_progress(server, data, tmp_path):
    """`retries` counts tries without progress: a link that keeps dropping still finishes."""
    url = server.add("/m.zip", data, drop_after=512 << 10, drop_times=None)
    dest = tmp_path / "m.zip"
    download(url, dest, retries=1, **FAST)
    assert dest.read_bytes() == data
    assert len(server.requests_for("/m.zip")) == -(-len(data) // (512 << 10))
    assert server.bytes_sent["/m.zip"] == len(data)


@pytest.mark.parametrize("status", [503, 500, 429])
def test_error_burst_then_success(server, data, tmp_path, status):
    url = server.add("/m.zip", data, fail_first=3, fail_status=status, retry_after=0)
    dest = tmp_path / "m.zip"
    download(url, dest, **FAST)
    assert dest.read_bytes() == data
    assert [g.status for g in server.requests_for("/m.zip")] == [status] * 3 + [200]


def test_tries_exhausted_keeps_part_and_says_how_to_resume(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=MiB)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError) as err:
        download(url, dest, retries=0, **FAST)
    assert "failed after 1 try:" in err.value.message
    assert "run the same command again to resume" in (err.value.hint or "")
    assert part_of(dest).stat().st_size == MiB and sidecar_of(dest).is_file()
    assert not dest.exists()
    result = download(url, dest, **FAST)  # the next call resumes
    assert dest.read_bytes() == data and result.resumed_from == MiB and result.fetched < len(data)


def test_server_errors_forever_give_up_without_leaving_files(server, data, tmp_path):
    url = server.add("/m.zip", data, fail_first=100)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError, match=r"failed after 3 tries: HTTP 503"):
        download(url, dest, retries=2, **FAST)
    assert len(server.requests_for("/m.zip")) == 3
    assert leftovers(dest) == [] and not dest.exists()


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"failed after 2 tries: .*Refused") as err:
        download(f"http://127.0.0.1:{port}/m.zip", tmp_path / "m.zip", retries=1, **FAST)
    assert "check your network" in (err.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_stalled_server_detected_by_timeout_and_resumed(server, data, tmp_path):
    url = server.add("/m.zip", data, stall_after=MiB, stall_for=30)
    dest = tmp_path / "m.zip"
    result = download(url, dest, backoff=0.01, timeout=1.0)
    assert dest.read_bytes() == data
    gets = server.requests_for("/m.zip")
    assert len(gets) == 2 and gets[1].range == f"bytes={MiB}-"
    assert result.fetched == len(data)


def test_server_ignoring_range_restarts_cleanly(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=MiB, ignore_range=True)
    dest = tmp_path / "m.zip"
    result = download(url, dest, **FAST)
    assert dest.read_bytes() == data
    assert result.restarted and result.fetched == len(data) + MiB
    assert [g.status for g in server.requests_for("/m.zip")] == [200, 200]


def test_server_ignoring_range_on_a_dropping_link_gives_up(server, data, tmp_path):
    """Every try restarts at byte 0 and drops: no try gets further, so tries run out."""
    url = server.add("/m.zip", data, drop_after=MiB, drop_times=None, ignore_range=True)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError, match=r"failed after 4 tries: .* from byte 0 3 times"):
        download(url, dest, retries=2, **FAST)
    assert len(server.requests_for("/m.zip")) == 4


def test_file_changed_between_calls_restarts_with_new_content(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=MiB)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError):
        download(url, dest, retries=0, **FAST)
    old_etag = json.loads(sidecar_of(dest).read_text())["etag"]
    new = random_bytes(3 * MiB, seed=2)
    server.replace("/m.zip", new)
    result = download(url, dest, **FAST)
    assert dest.read_bytes() == new
    assert result.restarted and result.resumed_from == 0 and result.etag != old_etag
    last = server.requests_for("/m.zip")[-1]
    assert last.if_range == old_etag and last.status == 200  # If-Range did the restart


def test_changed_file_caught_even_when_server_ignores_if_range(server, data, tmp_path):
    """A 206 with a new ETag is thrown away, never spliced onto the old bytes."""
    url = server.add("/m.zip", data, drop_after=MiB, ignore_if_range=True)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError):
        download(url, dest, retries=0, **FAST)
    new = random_bytes(len(data), seed=3)  # same size: only the ETag tells
    server.replace("/m.zip", new)
    result = download(url, dest, **FAST)
    assert dest.read_bytes() == new and result.restarted
    assert [g.status for g in server.requests_for("/m.zip")][-2:] == [206, 200]


def test_416_restarts_from_zero(server, data, tmp_path):
    url = server.add("/m.zip", data, drop_after=2 * MiB, ignore_if_range=True)
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError):
        download(url, dest, retries=0, **FAST)
    new = random_bytes(MiB, seed=4)  # shorter than what is on disk
    server.replace("/m.zip", new)
    result = download(url, dest, **FAST)
    assert dest.read_bytes() == new and result.restarted
    assert [g.status for g in server.requests_for("/m.zip")][-2:] == [416, 200]


def test_part_without_sidecar_is_discarded(server, data, tmp_path):
    url = server.add("/m.zip", data)
    dest = tmp_path / "m.zip"
    part_of(dest).write_bytes(b"junk" * 1000)
    result = download(url, dest)
    assert dest.read_bytes() == data and result.restarted
    assert server.requests_for("/m.zip")[0].range is None


def test_sidecar_of_another_url_is_not_trusted(server, data, tmp_path):
    url = server.add("/m.zip", data)
    dest = tmp_path / "m.zip"
    part_of(dest).write_bytes(data[:MiB])
    other = {"url": url + "?old", "size": len(data), "etag": '"x"', "last_modified": None}
    sidecar_of(dest).write_text(json.dumps(other))
    download(url, dest)
    assert dest.read_bytes() == data
    assert server.requests_for("/m.zip")[0].range is None


# -- kill -9 ------------------------------------------------------------------------------------


def test_kill_9_mid_download_then_rerun(server, tmp_path):
    data = random_bytes(12 * MiB, seed=5)
    url = server.add("/big.zip", data, rate=4 * MiB)  # 3 s for the whole file
    dest = tmp_path / "big.zip"
    code = "import sys; from bertctl.fetch import download; download(sys.argv[1], sys.argv[2])"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(dest)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (part_of(dest).exists() and part_of(dest).stat().st_size >= 2 * MiB):
            assert proc.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "the part file never reached 2 MiB"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    on_disk = part_of(dest).stat().st_size
    assert 2 * MiB <= on_disk < len(data) and not dest.exists()
    assert json.loads(sidecar_of(dest).read_text())["size"] == len(data)

    server.set_faults("/big.zip", rate=None)
    result = download(url, dest)
    assert dest.read_bytes() == data
    assert result.resumed_from == on_disk and not result.restarted
    assert server.bytes_sent["/big.zip"] - len(data) < MiB
    assert leftovers(dest) == []


def test_second_download_of_same_file_fails_at_once(server, data, tmp_path):
    url = server.add("/m.zip", data, rate=2 * MiB)
    dest = tmp_path / "m.zip"
    errors: list[BaseException] = []

    def first() -> None:
        try:
            download(url, dest)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not part_of(dest).exists() or part_of(dest).stat().st_size == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(DownloadError, match="already being downloaded by process") as err:
            download(url, dest)
        assert str(dest.with_name("m.zip.lock")) in (err.value.hint or "")
    finally:
        server.set_faults("/m.zip", rate=None)
        thread.join(timeout=30)
    assert errors == [] and dest.read_bytes() == data


# -- refusals -----------------------------------------------------------------------------------


def test_404_names_status_and_leaves_nothing(server, tmp_path):
    server.add("/other.zip", b"x")
    dest = tmp_path / "m.zip"
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError) as err:
        download(url, dest, **FAST)
    assert "404" in err.value.message and url in err.value.message
    assert "--mirror" in (err.value.hint or "")
    assert len(server.requests) == 1  # not retried
    assert list(tmp_path.iterdir()) == []


def test_plain_http_to_other_hosts_refused_before_any_connection(tmp_path):
    dest = tmp_path / "m.zip"
    with pytest.raises(DownloadError, match="--allow-http"):
        download("http://example.invalid/m.zip", dest)
    assert list(tmp_path.iterdir()) == []  # not even the folder's lock file


def test_redirect_to_plain_http_elsewhere_refused(server, tmp_path):
    url = server.redirect("/m.zip", "http://example.invalid/m.zip")
    with pytest.raises(DownloadError, match="--allow-http"):
        download(url, tmp_path / "m.zip")


def test_redirect_within_loopback_followed(server, data, tmp_path):
    server.add("/real.zip", data)
    url = server.redirect("/m.zip", server.url("/real.zip"))
    download(url, tmp_path / "m.zip")
    assert (tmp_path / "m.zip").read_bytes() == data


@pytest.mark.parametrize(
    "url",
    [
        "https://storage.googleapis.com/bert_models/2018_10_18/uncased_L-12_H-768_A-12.zip",
        "http://127.0.0.1:8000/x.zip",
        "http://127.1.2.3/x.zip",
        "http://localhost/x.zip",
        "http://[::1]:9/x.zip",
    ],
)
def test_allowed_urls(url):
    check_url_allowed(url)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://example.invalid/x.zip", "--allow-http"),
        ("http://10.0.0.1/x.zip", "--allow-http"),
        ("ftp://example.com/x.zip", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https:///x.zip", "no host"),
    ],
)
def test_refused_urls(url, needle):
    with pytest.raises(DownloadError) as err:
        check_url_allowed(url)
    assert needle in str(err.value)


def test_allow_http_opens_plain_http():
    check_url_allowed("http://example.invalid/x.zip", allow_http=True)


def test_huge_content_length_refused_before_any_byte(server, tmp_path):
    url = server.add("/huge.zip", b"", announce_length=2**60)
    dest = tmp_path / "huge.zip"
    with pytest.raises(DownloadError) as err:
        download(url, dest, **FAST)
    assert "needs" in err.value.message and "free on" in err.value.message
    assert str(tmp_path) in err.value.message
    assert len(server.requests) == 1  # not retried
    assert not part_of(dest).exists() or part_of(dest).stat().st_size == 0
    assert not dest.exists()


# -- pure functions -----------------------------------------------------------------------------


def test_parse_content_range():
    assert parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert parse_content_range("bytes 0-0/*") == (0, 0, None)
    for bad in ("bytes */1000", "items 0-1/2", "bytes 5-4/10", "bytes 0-10/10", "bytes x-1/2"):
        with pytest.raises(ValueError):
            parse_content_range(bad)


def test_if_range_prefers_strong_etag_and_never_sends_a_weak_one():
    date = "Tue, 14 Nov 2023 22:13:21 GMT"
    assert if_range_validator('"abc"', date) == '"abc"'
    assert if_range_validator('W/"abc"', date) == date
    assert if_range_validator('W/"abc"', None) is None


def test_resume_offset_and_headers():
    state = PartState("u", 4096, '"v1"', None)
    assert resume_offset(1024, state, "u") == 1024
    assert resume_offset(1024, state, "other") == 0  # another URL's bytes
    assert resume_offset(1024, None, "u") == 0  # validators unknown
    assert resume_offset(1024, PartState("u", 4096, None, None), "u") == 0  # nothing to check
    assert resume_offset(5000, state, "u") == 0  # longer than the file
    assert resume_headers(1024, state) == {"Range": "bytes=1024-", "If-Range": '"v1"'}
    assert resume_headers(0, state) == {}


def test_decide():
    state = PartState("u", 4096, '"v1"', None)
    assert decide(0, None, Reply(200, 4096)).start == 0
    whole = decide(1024, state, Reply(200, 4096, etag='"v2"'))
    assert (whole.action, whole.start, whole.total) == ("write", 0, 4096)
    ok = decide(1024, state, Reply(206, 3072, "bytes 1024-4095/4096", '"v1"'))
    assert (ok.action, ok.start, ok.total) == ("write", 1024, 4096)
    for reply in (
        Reply(206, 3072, "bytes 1024-4095/4096", '"v2"'),  # new ETag, If-Range ignored
        Reply(206, 4096, "bytes 0-4095/4096", '"v1"'),  # not the range asked for
        Reply(206, 3072, "bytes 1024-5119/5120", '"v1"'),  # size changed
        Reply(206, 3072, None, '"v1"'),  # no Content-Range
        Reply(416),
    ):
        assert decide(1024, state, reply).action == "refetch", reply


def test_retry_delay_doubles_and_caps():
    assert [retry_delay(n, 0.5) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert retry_delay(1, 0.5, retry_after=3) == 3
    assert retry_delay(1, 0.5, retry_after=600) == 8


def test_fetch_stays_light():
    """fetch is standard library only: importing it pulls in neither Rich nor torch."""
    code = (
        "import sys, bertctl.fetch; print(sorted(m for m in ('rich', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert fetch.__doc__


def test_a_host_that_refuses_every_connection_is_given_up_after_one_retry(tmp_path, monkeypatch):
    """Nothing listens on the port: one retry (a server restarting), then the error, not 8
    retries and 40 s of backoff. The wait is counted, not timed."""
    import bertctl.fetch as fetch_module

    waits: list[float] = []
    monkeypatch.setattr(fetch_module.time, "sleep", waits.append)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        download(f"http://127.0.0.1:{port}/m.zip", tmp_path / "m.zip", retries=8)
    message = str(err.value)
    assert "failed after 2 tries" in message and f"nothing listens at 127.0.0.1:{port}" in message
    assert "host and port of the URL or --mirror" in message
    assert len(waits) == 1
    assert list(tmp_path.iterdir()) == []
