"""A loopback HTTP file server for download tests and benchmarks, with faults on demand.

    with LoopbackServer() as server:
        url = server.add("/model.zip", data, drop_after=1 << 20)   # close mid-body, once
        ...download(url, ...)...
        assert server.bytes_sent["/model.zip"] == len(data)       # nothing fetched twice
        server.replace("/model.zip", other)                        # new ETag + Last-Modified

It serves in-memory bytes or on-disk files with HEAD and GET, honours a single `Range` and
`If-Range`, and sends ETag, Last-Modified and Accept-Ranges. Faults are set per file (see
`Faults`). It records every request (method, Range, If-Range, status) and the body bytes sent
per path. Without throttling or faults, bodies go out through `sendfile` / `sendall` of large
slices, fast enough to benchmark a client against.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field, fields
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_EPOCH = 1_700_000_000  # Last-Modified of generation 0; each replace() moves it one second on


@dataclass
class Faults:
    """Trouble a file's responses can cause. Counts apply per GET of that file.

    Attributes:
        fail_first: answer the first N GETs with `fail_status` (a 503 burst by default).
        fail_status: the status of those answers (503, 500, 429, ...).
        retry_after: a Retry-After value (seconds) sent with them, if any.
        drop_after: close the connection after this many body bytes of a response.
        drop_times: how many responses to cut that way (None: every one).
        drop_reset: cut with a TCP reset instead of a clean close.
        stall_after: stop sending after this many body bytes of a response ...
        stall_for: ... for this many seconds (longer than the client's timeout), then close.
        stall_times: how many responses stall (None: every one).
        ignore_range: always answer 200 with the whole body.
        ignore_if_range: honour Range even when If-Range no longer matches (a broken server).
        rate: throttle bodies to this many bytes per second.
        announce_length: send this Content-Length instead of the true one (the body is then
            the true bytes, cut to that length, and the connection closed).
    """

    fail_first: int = 0
    fail_status: int = 503
    retry_after: int | None = None
    drop_after: int | None = None
    drop_times: int | None = 1
    drop_reset: bool = False
    stall_after: int | None = None
    stall_for: float = 10.0
    stall_times: int | None = 1
    ignore_range: bool = False
    ignore_if_range: bool = False
    rate: float | None = None
    announce_length: int | None = None


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int = 0


@dataclass
class _File:
    content: bytes | Path
    generation: int
    faults: Faults = field(default_factory=Faults)
    gets: int = 0  # GETs answered, for fail_first
    drops: int = 0
    stalls: int = 0

    @property
    def size(self) -> int:
        return len(self.content) if isinstance(self.content, bytes) else self.content.stat().st_size

    @property
    def etag(self) -> str:
        return f'"g{self.generation}-{self.size:x}"'

    @property
    def last_modified(self) -> str:
        return formatdate(_EPOCH + self.generation, usegmt=True)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS); use as a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._files: dict[str, _File] = {}
        self._redirects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self.closing = threading.Event()  # wakes stalled and throttled handlers on stop()
        self.bytes_sent: dict[str, int] = {}
        self.requests: list[Seen] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content ------------------------------------------------------------------------------

    def add(self, path: str, content: bytes | Path, **faults: object) -> str:
        """Serve `content` (bytes, or a file read at request time) at `path`; return its URL."""
        with self._lock:
            self._generation += 1
            self._files[path] = _File(content, self._generation, Faults(**faults))  # type: ignore[arg-type]
            self.bytes_sent.setdefault(path, 0)
        return self.url(path)

    def replace(self, path: str, content: bytes | Path) -> None:
        """New content at `path`, with a new ETag and a later Last-Modified; faults are kept."""
        with self._lock:
            self._generation += 1
            f = self._files[path]
            f.content, f.generation = content, self._generation

    def set_faults(self, path: str, **changes: object) -> None:
        """Change some of a file's faults (`rate=None` to stop throttling); counters restart."""
        with self._lock:
            f = self._files[path]
            valid = {x.name for x in fields(Faults)}
            for key, value in changes.items():
                if key not in valid:
                    raise TypeError(f"unknown fault {key!r}")
                setattr(f.faults, key, value)
            f.gets = f.drops = f.stalls = 0

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer `path` with a redirect to `location`; return the URL of `path`."""
        self._redirects[path] = (status, location)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://{self._host}:{self.port}{path}"

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def requests_for(self, path: str, method: str = "GET") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _Server((self._host, 0), handler)
        # A short poll interval keeps stop() (and so every test's teardown) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler --------------------------------------------------------------------

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent[path] = self.bytes_sent.get(path, 0) + n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up stop()

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up mid-body (timeouts, kill -9) are the point of these tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner = self.owner
        self.close_connection = True
        path = self.path.split("?", 1)[0]
        seen = Seen(self.command, path, self.headers.get("Range"), self.headers.get("If-Range"))
        with owner._lock:
            owner.requests.append(seen)
            f = owner._files.get(path)
            redirect = owner._redirects.get(path)
            if f is not None:
                # A consistent snapshot: replace() may run between requests, not within one.
                content, etag, last_modified, size = f.content, f.etag, f.last_modified, f.size
                faults = Faults(**{x.name: getattr(f.faults, x.name) for x in fields(Faults)})
                failing = body and f.gets < faults.fail_first
                f.gets += 1 if body else 0
                drop = (
                    body and faults.drop_after is not None and _take(f, "drops", faults.drop_times)
                )
                stall = (
                    body
                    and faults.stall_after is not None
                    and _take(f, "stalls", faults.stall_times)
                )

        if redirect is not None:
            seen.status = redirect[0]
            self.send_response(redirect[0])
            self.send_header("Location", redirect[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if f is None:
            seen.status = 404
            self._empty(404)
            return
        if failing:
            seen.status = faults.fail_status
            extra = (
                {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            )
            self._empty(faults.fail_status, extra)
            return

        start, end, status = 0, size - 1, 200
        wanted = seen.range if not faults.ignore_range else None
        stale = seen.if_range is not None and seen.if_range not in (etag, last_modified)
        if stale and not faults.ignore_if_range:
            wanted = None  # If-Range no longer matches: the file changed, send all of it
        if wanted:
            parsed = _parse_range(wanted, size)
            if parsed is None:
                seen.status = 416
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            start, end = parsed
            status = 206

        length = end - start + 1
        announced = faults.announce_length if faults.announce_length is not None else length
        seen.status = status
        self.send_response(status)
        self.send_header("Content-Length", str(announced))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if not body:
            return

        limit = min(length, announced)
        cut = None
        if drop:
            cut = ("drop", faults.drop_after)
        if stall and (cut is None or faults.stall_after < cut[1]):  # type: ignore[operator]
            cut = ("stall", faults.stall_after)
        send_until = min(limit, cut[1]) if cut else limit
        try:
            if faults.rate is None and cut is None:
                self._send_fast(path, content, start, send_until)
            else:
                self._send_slow(path, content, start, send_until, f)
        except OSError:
            return  # the client went away
        if cut and cut[1] < limit:
            if cut[0] == "stall":
                owner.closing.wait(faults.stall_for)
            elif faults.drop_reset:
                # SO_LINGER 0: close() sends RST instead of FIN, as a crashed proxy would.
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def _send_fast(self, path: str, content: bytes | Path, start: int, count: int) -> None:
        """The body at full speed: sendfile from disk, or large slices from memory."""
        step = 8 << 20
        if isinstance(content, Path):
            with open(content, "rb") as fh:
                sent = 0
                while sent < count:
                    n = self.connection.sendfile(fh, start + sent, min(step, count - sent))
                    if n == 0:
                        break
                    sent += n
                    self.owner._count(path, n)
            return
        view = memoryview(content)
        for pos in range(start, start + count, step):
            piece = view[pos : min(pos + step, start + count)]
            self.connection.sendall(piece)
            self.owner._count(path, len(piece))

    def _send_slow(
        self, path: str, content: bytes | Path, start: int, count: int, f: _File
    ) -> None:
        """The body in small pieces, throttled to the file's `rate` bytes/s, counting as it goes.

        The rate is read live, so `set_faults(path, rate=None)` speeds up a response under way.
        """
        rate = f.faults.rate
        piece = 64 << 10 if rate is None else max(4096, min(64 << 10, int(rate / 50)))
        began, base = time.monotonic(), 0
        fh = open(content, "rb") if isinstance(content, Path) else None  # noqa: SIM115
        try:
            sent = 0
            while sent < count:
                n = min(piece, count - sent)
                if fh is not None:
                    fh.seek(start + sent)
                    data = fh.read(n)
                else:
                    data = content[start + sent : start + sent + n]  # type: ignore[index]
                self.connection.sendall(data)
                sent += n
                self.owner._count(path, n)
                if f.faults.rate != rate:  # changed under way: measure from here
                    rate, began, base = f.faults.rate, time.monotonic(), sent
                if rate:
                    wait = began + (sent - base) / rate - time.monotonic()
                    if wait > 0 and self.owner.closing.wait(wait):
                        return
        finally:
            if fh is not None:
                fh.close()


def _take(f: _File, counter: str, times: int | None) -> bool:
    """Use one of a fault's `times` (None: unlimited)."""
    used = getattr(f, counter)
    if times is not None and used >= times:
        return False
    setattr(f, counter, used + 1)
    return True


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range as (first, last); None if unsatisfiable.

    Example: `_parse_range("bytes=100-", 1000)` is `(100, 999)`.
    """
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, _, last_text = spec.strip().partition("-")
    try:
        if first_text == "":
            n = int(last_text)
            return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)
