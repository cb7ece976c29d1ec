"""Resumable HTTP download, verified by size. Standard library only: no Rich, no torch.

A download streams into `NAME.part` beside the destination, with a sidecar `NAME.part.json` that
records the URL, the total size and the server's validators (ETag, Last-Modified). A later call,
even in a new process after `kill -9`, asks for the rest with `Range` and `If-Range`, so the
server itself says whether the bytes on disk still belong to the file it serves. Anything
doubtful restarts from byte 0: a wrong splice costs more than a slow download.

Crash safety rests on three orderings:

1. The sidecar is written (temp file + fsync + `os.replace`) *before* the first byte of a response
   is appended, and a part file is cut to 0 *before* a new sidecar replaces an old one. So the
   validators on disk always describe the bytes on disk; a part file without a sidecar is
   discarded.
2. The sidecar records no byte count. On resume the part file's actual size is the truth, so a
   crash can lose the tail that was not yet written but can never claim bytes that are not there.
3. The part file is fsynced every `_SYNC_EVERY` bytes and at the end, before `os.replace` turns it
   into the destination; the sidecar goes last. A crash between the two leaves a complete
   destination and a stray sidecar, which the next call removes.

Hashes are not checked here: the caller verifies the finished file.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bertctl import outputs
from bertctl.errors import BertctlError

ProgressCallback = Callable[[int, "int | None"], None]  # (bytes on disk, total or None)

USER_AGENT = "bertctl (+https://github.com/google-research/bert releases)"
_MAX_DELAY = 8.0  # seconds: the longest wait between two tries
_SYNC_EVERY = 64 << 20  # fsync the part file after this many bytes (see BENCHMARKS.md, Download)
_SPACE_MARGIN = 64 << 20  # keep this much (or 1% of the file, if larger) free after a download
# A body whose size the server does not announce stops here: above the largest Google zip
# (all_bert_models.zip, about 3 GB), so only a server that streams without end reaches it.
MAX_UNANNOUNCED_BYTES = 8 << 30
# The size bertctl expects of a catalogue release: its checkpoint (4 bytes a parameter) plus
# this for the vocab, config, index and .meta graph (all under 2 MB), then PROMISE_MARGIN more.
_PROMISE_SLACK = 16 << 20
PROMISE_MARGIN = 0.10


class DownloadError(BertctlError):
    """A download that cannot go on: refused URL, HTTP error, no disk space, tries exhausted."""


@dataclass(frozen=True)
class FetchResult:
    """What one `download` call did.

    Attributes:
        path: the finished file.
        url: the URL asked for.
        size: the finished file's size in bytes.
        fetched: body bytes this call received over the network (0 when already complete),
            counting bytes later thrown away by a restart.
        resumed_from: bytes kept from an earlier, interrupted call (0 for a fresh start or when
            the server made us restart).
        restarted: True when bytes already on disk had to be thrown away (the file changed on the
            server, the server ignored Range, or the part file could not be trusted).
        already_complete: True when the file was there already and no request was made.
        etag, last_modified: the server's validators for the file downloaded (None when it sent
            none, or when no request was made).
    """

    path: Path
    url: str
    size: int
    fetched: int
    resumed_from: int
    restarted: bool
    already_complete: bool
    etag: str | None
    last_modified: str | None


# ---------------------------------------------------------------------------------------------
# URL policy


def redact(url: str) -> str:
    """`url` for messages: a password in it (`user:password@host`) shown as `***`, and a user
    part without one (often a token) as `***` whole.

    Example: `redact("https://me:hunter2@host/m.zip")` is `"https://me:***@host/m.zip"`.
    """
    match = _USERINFO.match(url)
    if match is None:
        return url
    user, colon, _ = match.group(2).partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{match.group(1)}{shown}@{url[match.end() :]}"


# scheme://, then the user part: everything up to the last "@" before the path, query or fragment
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(`url` without its `user:password@`, the Basic `Authorization` header that sends them).

    urllib would take `user:password@host` for a host name; the credentials go in a header
    instead, and never into the sidecar on disk or a message.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean, {"Authorization": f"Basic {token}"}


def check_url_allowed(url: str, allow_http: bool = False) -> None:
    """Refuse URLs bertctl should not download from.

    https is always allowed. Plain http is allowed to loopback hosts (`localhost`, 127.0.0.0/8,
    ::1), which tests and local mirrors use, and anywhere else only with `allow_http`: the release
    zips carry no published hashes, so a plain-http download could be swapped in transit.

    Example: `check_url_allowed("http://127.0.0.1:8000/x.zip")` returns; with
    `"http://example.com/x.zip"` it raises DownloadError naming `--allow-http`.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    url = redact(url)  # for the messages below
    if scheme not in ("https", "http"):
        raise DownloadError(
            f"cannot download {url!r}: only https:// URLs are supported",
            hint="pass an https:// URL (or http:// to a local mirror)",
        )
    if not parts.hostname:
        raise DownloadError(f"cannot download {url!r}: the URL names no host", "check the URL")
    if scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise DownloadError(
            f"refusing plain http to {parts.hostname}: {url}",
            hint="use an https:// URL, or pass --allow-http if you trust the network",
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but only to URLs the same policy allows (no https -> http downgrade)."""

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        check_url_allowed(newurl, self.allow_http)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        old_host = urllib.parse.urlsplit(req.full_url).netloc.lower()
        if new is not None and urllib.parse.urlsplit(newurl).netloc.lower() != old_host:
            new.remove_header("Authorization")  # credentials are for the host they were given
        return new


# ---------------------------------------------------------------------------------------------
# Pure decisions


@dataclass(frozen=True)
class PartState:
    """The sidecar: what the bytes in a part file are a prefix of.

    Attributes:
        url: the URL they came from.
        size: the full file's size, when the server announced it.
        etag, last_modified: the server's validators for that file.
    """

    url: str
    size: int | None
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Reply:
    """The parts of a response's head that decide what to do with its body."""

    status: int
    content_length: int | None = None
    content_range: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with a response.

    Attributes:
        action: "write" (append the body at `start`) or "refetch" (discard this response, cut the
            part file and ask again from byte 0).
        start: the file offset of the body's first byte (0 means: cut the part file first).
        total: the full file's size, when known.
        reason: why, in words, for error messages and debugging.
    """

    action: str
    start: int = 0
    total: int | None = None
    reason: str = ""


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """Parse a `Content-Range` header of a 206 response.

    Returns (first byte, last byte, total size or None when the server writes `*`).
    Raises ValueError for anything else, including the `bytes */N` form of a 416.

    Example: `parse_content_range("bytes 100-199/1000")` is `(100, 199, 1000)`.
    """
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes":
        raise ValueError(f"not a byte range: {value!r}")
    span, sep, total_text = spec.strip().partition("/")
    first_text, dash, last_text = span.partition("-")
    if not sep or not dash:
        raise ValueError(f"malformed Content-Range: {value!r}")
    try:
        first, last = int(first_text), int(last_text)
        total = None if total_text.strip() == "*" else int(total_text)
    except ValueError:
        raise ValueError(f"malformed Content-Range: {value!r}") from None
    if first < 0 or last < first or (total is not None and last >= total):
        raise ValueError(f"impossible Content-Range: {value!r}")
    return first, last, total


def if_range_validator(etag: str | None, last_modified: str | None) -> str | None:
    """The value to send in `If-Range`: a strong ETag, else Last-Modified, else None.

    A weak ETag (`W/"..."`) may not be used in If-Range (RFC 9110 §13.1.5): it promises equivalent
    content, not identical bytes, and a resumed download needs identical bytes.
    """
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None


def resume_offset(part_size: int, state: PartState | None, url: str) -> int:
    """How many bytes of an existing part file can be kept: `part_size`, or 0 to start over.

    Bytes are kept only when the sidecar says they came from this URL and names a validator the
    server can check them against; with no validator the server could send the rest of a
    different file and nothing would notice.
    """
    if part_size <= 0 or state is None or state.url != url:
        return 0
    if if_range_validator(state.etag, state.last_modified) is None:
        return 0
    if state.size is not None and part_size > state.size:
        return 0
    return part_size


def resume_headers(offset: int, state: PartState | None) -> dict[str, str]:
    """The request headers that ask for the bytes after `offset`, or {} to ask for everything.

    `If-Range` makes the server send the whole file (200) instead of the range (206) when its
    file no longer matches the validator: a restart in one round trip, with no splice.

    Example: `resume_headers(1024, PartState(url, 4096, '"v1"', None))` is
    `{"Range": "bytes=1024-", "If-Range": '"v1"'}`.
    """
    if offset <= 0 or state is None:
        return {}
    validator = if_range_validator(state.etag, state.last_modified)
    if validator is None:
        return {}
    return {"Range": f"bytes={offset}-", "If-Range": validator}


def decide(offset: int, state: PartState | None, reply: Reply) -> Decision:
    """Resume, restart or ask again, given what we asked for and what the server answered.

    Args:
        offset: the byte we asked to start from (0: no Range was sent).
        state: the sidecar the request was based on (None for a fresh start).
        reply: the response's status and headers.

    A 200 is the whole file: write it from byte 0 (a restart when `offset` > 0, because the server
    ignores Range or If-Range said the file changed). A 206 is kept only when it starts at
    `offset` and describes the same file (same total, same validators): a server that honours
    Range but ignores If-Range is caught here. A 416, or a 206 that fails those checks, is
    thrown away and the file fetched again from byte 0.
    """
    if reply.status == 200:
        reason = "server sent the whole file" if offset else ""
        return Decision("write", 0, reply.content_length, reason)
    if reply.status == 416:
        return Decision("refetch", reason="server refused the range (416)")
    if reply.status != 206:
        raise ValueError(f"decide() handles 200, 206 and 416, not {reply.status}")
    try:
        first, _, total = parse_content_range(reply.content_range or "")
    except ValueError as exc:
        return Decision("refetch", reason=f"206 with a bad Content-Range ({exc})")
    if first != offset:
        return Decision("refetch", reason=f"asked for byte {offset}, got a range from {first}")
    if offset and state is not None:
        if state.size is not None and total is not None and total != state.size:
            return Decision("refetch", reason=f"file size changed from {state.size} to {total}")
        if _changed(state.etag, reply.etag) or _changed(state.last_modified, reply.last_modified):
            return Decision("refetch", reason="file changed on the server (new ETag)")
    if total is None and state is not None:
        total = state.size
    return Decision("write", first, total)


def _changed(old: str | None, new: str | None) -> bool:
    """A validator changed; one side missing says nothing either way."""
    return bool(old and new and old != new)


def retry_delay(failures: int, backoff: float, retry_after: float | None = None) -> float:
    """Seconds to wait before the next try: `backoff` doubling per failure, capped at 8 s.

    A server's `Retry-After` lengthens the wait, within the same cap.

    Example: with backoff 0.5, failures 1, 2, 3, ... wait 0.5, 1, 2, 4, 8, 8, ... seconds.
    """
    delay = backoff * (2 ** max(failures - 1, 0))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, _MAX_DELAY)


# ---------------------------------------------------------------------------------------------
# Files: sidecar, lock


def _part_paths(dest: Path) -> tuple[Path, Path]:
    part = dest.with_name(dest.name + ".part")
    return part, part.with_name(part.name + ".json")


def read_state(meta: Path) -> PartState | None:
    """The sidecar, or None when it is missing or unreadable (its part file is then discarded)."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        size = data.get("size")
        return PartState(
            url=str(data["url"]),
            size=int(size) if size is not None else None,
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_state(meta: Path, state: PartState) -> None:
    """Replace the sidecar atomically and durably: readers see the old one or the new one.

    Its temp file has a fixed name (the download's lock keeps one writer), so a kill mid-write
    leaves a file the next write replaces, never a stray one beside the download."""
    payload = {
        "url": state.url,
        "size": state.size,
        "etag": state.etag,
        "last_modified": state.last_modified,
    }
    outputs.write_json_atomic(meta, payload, temp=meta.with_name(meta.name + ".tmp"))


def _exclusive_lock(dest: Path) -> contextlib.AbstractContextManager[None]:
    """Hold `DEST.lock` so no two processes (or threads) write the same part file; fail at once
    if taken: a second `bertctl download` of the same file would only wait for the first and
    then find the file complete, and a silent wait looks like a hang."""
    return outputs.exclusive_lock(
        dest,
        f"{dest.name} is already being downloaded",
        lock=dest.with_name(dest.name + ".lock"),
        error=DownloadError,
        unwritable_hint="check the folder's permissions, or set BERTCTL_HOME to a writable folder",
    )


# ---------------------------------------------------------------------------------------------
# Download


class _Retry(Exception):
    """A failure worth another try (network trouble, 5xx, 429), with the server's wait if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Refetch(Exception):
    """The response cannot be used; cut the part file and ask again from byte 0."""


class _Overrun(Exception):
    """The body went past the most it may hold; the bytes on disk cannot be trusted."""


def promised_size(url: str) -> tuple[int, str] | None:
    """(the most bytes a catalogue release's zip may hold, its name) when the URL's file name
    is a catalogue release's (as `install.resolve_source` matches it, mirrors included), else
    None. The zip holds the checkpoint (4 bytes a parameter) and small files; see
    _PROMISE_SLACK and PROMISE_MARGIN."""
    from bertctl import catalog
    from bertctl.bertconfig import check_config, count_parameters

    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    release = catalog.find(name.removesuffix(".zip")) if name.endswith(".zip") else None
    if release is None or release.bundle:
        return None
    config = check_config(release.bert_config()).config
    if config is None:  # pragma: no cover - every catalogue config is valid
        return None
    expected = 4 * count_parameters(config, heads=True) + _PROMISE_SLACK
    return expected + int(expected * PROMISE_MARGIN), release.name


def download(
    url: str,
    dest: Path,
    *,
    on_progress: ProgressCallback | None = None,
    allow_http: bool = False,
    retries: int = 8,
    timeout: float = 30.0,
    backoff: float = 0.5,
    chunk_size: int = 1 << 20,
    max_size: int | None = None,
) -> FetchResult:
    """Download `url` to `dest`, resuming an interrupted download, and check its size.

    Args:
        url: https URL (http only to loopback unless `allow_http`).
        dest: the finished file's path; its folder is created. While the download runs, the
            bytes live in `DEST.part`, the server's validators in `DEST.part.json`, and
            `DEST.lock` keeps a second process out (it fails at once, naming the first).
            A `user:password@` in the URL is sent as Basic authentication, and shown as `***`
            in every message.
        on_progress: called as `on_progress(bytes_on_disk, total_or_None)` about every
            `chunk_size` bytes and once at the end; first with the bytes resumed.
        allow_http: allow plain http to non-loopback hosts.
        retries: tries allowed after a failure that made no progress (a timeout, a reset, a 5xx
            or 429). A try that grew the file resets the count, so a flaky link that keeps
            dropping still finishes, while a dead one fails after `retries` tries.
        timeout: seconds to wait for a connection and for each read; a server that stalls
            longer is abandoned and the download resumed.
        backoff: the first wait between tries, doubling each time, capped at 8 s.
        chunk_size: the largest read from the socket, and the progress-report interval.
        max_size: the most bytes the file may hold when the server does not announce its size;
            by default what the catalogue expects of the release the URL names (see
            `promised_size`), else MAX_UNANNOUNCED_BYTES. An announced size is itself the
            bound. A body past the bound is stopped there, its part file removed.

    Returns:
        A FetchResult. When `dest` exists and no part file does, no request is made and
        `already_complete` is True (the caller checks hashes).

    Raises:
        DownloadError: refused URL, HTTP 4xx, not enough disk space (checked before any byte is
            written), tries exhausted (the part file is kept for the next call), lock taken, a
            body longer than announced or than `max_size` (nothing kept).
    """
    check_url_allowed(url, allow_http)
    if retries < 0 or chunk_size <= 0 or timeout <= 0:
        raise ValueError("retries must be >= 0, chunk_size and timeout > 0")
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create {dest.parent}: {exc.strerror}",
            hint="check the folder's permissions, or set BERTCTL_HOME to a writable folder",
        ) from exc
    part, meta = _part_paths(dest)
    with _exclusive_lock(dest):
        if dest.exists() and not part.exists():
            meta.unlink(missing_ok=True)  # a crash between os.replace and the sidecar's removal
            size = dest.stat().st_size
            return FetchResult(
                path=dest,
                url=url,
                size=size,
                fetched=0,
                resumed_from=0,
                restarted=False,
                already_complete=True,
                etag=None,
                last_modified=None,
            )
        job = _Download(url, dest, part, meta, on_progress, allow_http, timeout, chunk_size)
        job.bound = _bound(url, max_size)  # the body's bound when the server announces no size
        return job.run(retries, backoff)


def _bound(url: str, max_size: int | None) -> tuple[int, str]:
    """The most bytes an unannounced body may bring, and the words that explain it."""
    if max_size is not None:
        return max_size, f"{_human(max_size)}, the most expected of it"
    promise = promised_size(url)
    if promise is not None:
        size, name = promise
        return size, f"{_human(size)}, the most bertctl expects of {name}'s zip"
    return MAX_UNANNOUNCED_BYTES, f"{_human(MAX_UNANNOUNCED_BYTES)}, more than any BERT release"


_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class _Download:
    """One download's state across its tries. `run` reads top to bottom: try, wait, try again."""

    def __init__(
        self,
        url: str,
        dest: Path,
        part: Path,
        meta: Path,
        on_progress: ProgressCallback | None,
        allow_http: bool,
        timeout: float,
        chunk_size: int,
    ) -> None:
        # self.url (requests, the sidecar) holds no credentials; self.shown is for messages.
        self.url, self.auth = split_credentials(url)
        self.shown = redact(url)
        self.dest, self.part, self.meta = dest, part, meta
        self.bound: tuple[int, str] = (MAX_UNANNOUNCED_BYTES, "")
        self.on_progress = on_progress
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.opener = urllib.request.build_opener(_CheckedRedirects(allow_http))
        self.state = read_state(meta)
        self.fetched = 0
        self.resumed_from: int | None = None  # set by the first response
        self.restarted = False
        self.restarts = 0  # times bytes on disk were thrown away during this call
        self.requests = 0
        self.refusals = 0  # requests the host refused to connect
        self.high_water = self._part_size()  # the largest the part file has been: progress

    # -- the loop ---------------------------------------------------------------------------

    def run(self, retries: int, backoff: float) -> FetchResult:
        failures = 0
        while True:
            try:
                if self._attempt():
                    return self._finish()
            except OSError as exc:
                # Network errors became _Retry inside _attempt; this is the disk (full, or not
                # writable) under the part file or its sidecar. What is on disk stays valid.
                where = exc.filename or self.part
                raise DownloadError(
                    f"cannot write {where}: {exc.strerror or exc}",
                    hint="free some space or check the folder's permissions; run again to resume",
                ) from exc
            except _Overrun as exc:
                self._discard()
                raise DownloadError(
                    f"download of {self.shown} stopped: {exc}; nothing was kept",
                    hint="the server is not sending the file asked for; try again later, or "
                    "another --mirror",
                ) from None
            except _Refetch as exc:
                # Thrown-away responses count as failures only when nothing was on disk to
                # throw away: a server that keeps answering byte 0 oddly must not loop forever.
                if self._cut_part() == 0:
                    failures += 1
                    if failures > retries:
                        raise self._gave_up(str(exc)) from None
                continue
            except _Retry as exc:
                if self.refusals >= 2 and self.refusals == self.requests:
                    # Every try was refused by the host itself: nothing listens on that port,
                    # and 40 s of backoff would not change that. (One retry allows for a server
                    # that is restarting; refusals after a connection that worked are retried
                    # as resets are.)
                    raise self._gave_up(
                        f"{exc} (nothing listens at {self._where()})",
                        "check your network, and the host and port of the URL or --mirror",
                    ) from None
                size = self._part_size()
                if size > self.high_water:
                    self.high_water, failures = size, 0
                failures += 1
                if failures > retries:
                    raise self._gave_up(str(exc)) from None
                if self.restarts > retries:
                    # Each restart resets the progress mark, so a server that ignores Range on a
                    # link that keeps dropping would otherwise "progress" forever.
                    why = f"{exc}, and the server sent the file from byte 0 {self.restarts} times"
                    raise self._gave_up(why) from None
                time.sleep(retry_delay(failures, backoff, exc.retry_after))

    def _attempt(self) -> bool:
        """One request. True when the part file is complete; raises _Retry or _Refetch."""
        part_size = self._part_size()
        offset = resume_offset(part_size, self.state, self.url)
        if offset and self.state and self.state.size == offset:
            return True  # complete on disk: a crash came between the last byte and the rename
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **self.auth}
        headers.update(resume_headers(offset, self.state))
        request = urllib.request.Request(self.url, headers=headers)
        self.requests += 1
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._http_error(exc) from None
        except _NETWORK_ERRORS as exc:
            raise self._network_error(exc) from exc
        with response:
            reply = _reply_of(response.status, response.headers)
            decision = decide(offset, self.state if offset else None, reply)
            if decision.action == "refetch":
                raise _Refetch(decision.reason)
            if self.resumed_from is None:
                self.resumed_from = decision.start
            self._check_space(decision, part_size)
            self._adopt(decision, reply)
            return self._receive(response, decision, reply.content_length)

    # -- steps ------------------------------------------------------------------------------

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        """_Refetch for 416, _Retry for 429 and 5xx, DownloadError for any other status."""
        status = exc.code
        if status == 416:
            return _Refetch("server refused the range (416)")
        if status == 429 or status >= 500:
            return _Retry(f"HTTP {status} {exc.reason}", _retry_after(exc.headers))
        hint = "check the name or --mirror" if status == 404 else "check the URL or --mirror"
        return DownloadError(f"HTTP {status} {exc.reason} for {self.shown}", hint=hint)

    def _network_error(self, exc: BaseException) -> Exception:
        """_Retry for trouble that may pass; DownloadError for trouble that will not."""
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        host = urllib.parse.urlsplit(self.url).hostname
        if isinstance(reason, ssl.SSLCertVerificationError):
            return DownloadError(
                f"TLS certificate of {host} not trusted: {reason.verify_message}",
                hint="check the URL, the system clock and your CA certificates",
            )
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            return DownloadError(f"cannot resolve host {host}", "check the URL and your network")
        if isinstance(reason, TimeoutError):
            return _Retry(f"no data from {host} for {self.timeout:g} s")
        if isinstance(reason, ConnectionRefusedError):
            self.refusals += 1  # counted for `run`: a host that refuses every try is given up
        if isinstance(reason, (OSError, http.client.HTTPException)):
            return _Retry(f"{type(reason).__name__}: {reason}")
        return DownloadError(f"cannot download {self.shown}: {reason}", "check the URL")

    def _check_space(self, decision: Decision, part_size: int) -> None:
        """Refuse before writing a byte when the rest of the file cannot fit."""
        if decision.total is None:
            return
        remaining = decision.total - decision.start
        free = shutil.disk_usage(self.dest.parent).free
        if decision.start == 0:
            free += part_size  # the part file is about to be cut
        if free < remaining + max(_SPACE_MARGIN, remaining // 100):
            raise DownloadError(
                f"{self.dest.name} needs {_human(remaining)}, "
                f"{_human(free)} free on {self.dest.parent}",
                hint="free some space, or set BERTCTL_HOME to a folder on a larger disk",
            )

    def _adopt(self, decision: Decision, reply: Reply) -> None:
        """Make the part file and sidecar describe the body about to be written.

        Order matters for crash safety: cut the old bytes first, then record the new
        validators; a crash in between leaves an empty part file, which is harmless.
        """
        if decision.start == 0:
            self._cut_part()
        old = self.state
        new = PartState(
            url=self.url,
            size=decision.total,
            etag=reply.etag or (old.etag if old and decision.start else None),
            last_modified=reply.last_modified
            or (old.last_modified if old and decision.start else None),
        )
        if new != old:
            _write_state(self.meta, new)
            self.state = new

    def _receive(
        self, response: http.client.HTTPResponse, decision: Decision, length: int | None
    ) -> bool:
        """Append the body to the part file. True when the file is complete."""
        done, total = decision.start, decision.total
        received, synced, reported = 0, done, done
        # An announced size bounds the body exactly (no file holds more than it has); without
        # one, the bound of `download`'s max_size. Nothing past it reaches the part file.
        cap = total if total is not None else self.bound[0]
        why = (
            f"the server sent more than the {_human(total)} it announced"
            if total is not None
            else f"the server announced no size and sent more than {self.bound[1]}"
        )
        if self.on_progress:
            self.on_progress(done, total)
        # read1 returns what one socket read brings (up to chunk_size) instead of waiting to
        # fill the buffer: bytes already received are written before a stall or a kill.
        with open(self.part, "r+b" if self.part.exists() else "w+b") as fh:
            fh.truncate(done)
            fh.seek(done)
            while True:
                try:
                    block = response.read1(self.chunk_size)
                except _NETWORK_ERRORS as exc:
                    self._sync(fh)
                    raise self._network_error(exc) from exc
                if not block:
                    break
                if done + len(block) > cap:
                    self._sync(fh)
                    raise _Overrun(why)
                try:
                    fh.write(block)
                except OSError as exc:
                    raise DownloadError(
                        f"cannot write {self.part}: {exc.strerror}",
                        hint="free some space or check the folder's permissions; run again to resume",
                    ) from exc
                n = len(block)
                done += n
                received += n
                self.fetched += n
                # Durability for power loss, not for kill -9 (the page cache survives that):
                # bench/bench_download.py measured an fsync per MiB at half the throughput, one
                # per 64 MiB at no measurable cost.
                if done - synced >= _SYNC_EVERY:
                    self._sync(fh)
                    synced = done
                if self.on_progress and done - reported >= self.chunk_size:
                    self.on_progress(done, total)
                    reported = done
            self._sync(fh)
        if self.on_progress and reported != done:
            self.on_progress(done, total)
        if length is not None and received < length:
            raise _Retry(f"connection closed after {received} of {length} bytes")
        if total is not None and done < total:
            if not received:
                raise _Retry(f"server sent an empty body at byte {done} of {total}")
            return False  # a shorter range than asked for, delivered whole: ask for the rest
        if total is not None and done > total:
            raise _Refetch(f"server sent {done} bytes of a {total}-byte file")
        return True

    def _finish(self) -> FetchResult:
        size = self._part_size()
        state = self.state
        if state is not None and state.size is not None and size != state.size:
            raise DownloadError(  # unreachable unless the part file is changed under us
                f"{self.part} holds {size} bytes, the server announced {state.size}",
                hint="delete it and run again",
            )
        os.replace(self.part, self.dest)
        outputs.fsync_dir(self.dest.parent)
        self.meta.unlink(missing_ok=True)
        return FetchResult(
            path=self.dest,
            url=self.url,
            size=size,
            fetched=self.fetched,
            resumed_from=self.resumed_from if self.resumed_from is not None else size,
            restarted=self.restarted,
            already_complete=False,
            etag=state.etag if state else None,
            last_modified=state.last_modified if state else None,
        )

    def _gave_up(
        self, why: str, advice: str = "check your network or try --mirror"
    ) -> DownloadError:
        size = self._part_size()
        total = self.state.size if self.state else None
        kept = f"{_human(size)} of {_human(total)}" if total else _human(size)
        hint = f"run the same command again to resume ({kept} on disk)" if size else advice
        tried = f"{self.requests} {'try' if self.requests == 1 else 'tries'}"
        return DownloadError(f"download of {self.shown} failed after {tried}: {why}", hint)

    # -- helpers ----------------------------------------------------------------------------

    def _where(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    def _part_size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _discard(self) -> None:
        """Remove the part file and its sidecar (bytes that are not the file asked for)."""
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def _cut_part(self) -> int:
        """Empty the part file (durably, before any new sidecar); return its old size."""
        size = self._part_size()
        if size:
            with open(self.part, "r+b") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())
            self.restarted = True
            self.restarts += 1
            self.high_water = 0  # progress now counts from the new start
        return size

    @staticmethod
    def _sync(fh) -> None:
        fh.flush()
        os.fsync(fh.fileno())


def _reply_of(status: int, headers) -> Reply:
    length = headers.get("Content-Length")
    try:
        content_length = int(length) if length is not None else None
    except ValueError:
        content_length = None
    return Reply(
        status=status,
        content_length=content_length if content_length is None or content_length >= 0 else None,
        content_range=headers.get("Content-Range"),
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
    )


def _retry_after(headers) -> float | None:
    """`Retry-After: N` in seconds (the HTTP-date form is ignored: the cap is 8 s anyway)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _human(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as ui.human_bytes, without importing Rich)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover
