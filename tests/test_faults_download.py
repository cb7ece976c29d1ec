"""Downloads under faults: killed at ten random points, and through a link that keeps flapping.

Everything is real: a loopback HTTP server (tests/httpserver.py), a real `kill -9` of a real
download process, and a TCP proxy that refuses, resets, cuts and stalls connections on a seeded
schedule. test_fetch.py covers each fault alone; here they come one after another or all mixed,
and every resume must still end in the server's exact bytes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bertctl.fetch import download

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p != dest)


# --------------------------------------------------------------------------------------------
# kill -9 at ten random points


def _start(url: str, dest: Path) -> subprocess.Popen:
    code = "import sys; from bertctl.fetch import download; download(sys.argv[1], sys.argv[2])"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, url, str(dest)], env=env)


def _kill_when(proc: subprocess.Popen, part: Path, *, at_bytes: int, after: float) -> None:
    """SIGKILL once the part file holds `at_bytes` or `after` seconds have passed, whichever
    comes first: some kills land in the transfer, some before the first byte (start-up, lock,
    sidecar)."""
    started = time.monotonic()
    deadline = started + 60
    while proc.poll() is None and time.monotonic() < deadline:
        size = part.stat().st_size if part.exists() else 0
        if size >= at_bytes or time.monotonic() - started >= after:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_ten_kills_at_random_points_each_resume_to_a_correct_file(server, tmp_path):
    rng = random.Random(20240611)
    data = rng.randbytes(10 * MiB + 777)
    url = server.add("/big.zip", data, rate=12 * MiB)  # under a second in all: kills land inside
    dest = tmp_path / "big.zip"
    part = part_of(dest)
    points = sorted(rng.randrange(len(data) * 9 // 10) for _ in range(10))
    kept = 0
    for number, at_bytes in enumerate(points, 1):
        proc = _start(url, dest)
        _kill_when(proc, part, at_bytes=at_bytes, after=rng.uniform(0.05, 1.5))
        assert proc.returncode == -signal.SIGKILL, f"kill {number}: the download ended first"
        assert not dest.exists()
        on_disk = part.read_bytes() if part.exists() else b""
        # what survived a kill is exactly the start of the file, and never less than before
        assert on_disk == data[: len(on_disk)], f"kill {number}: the part file is not a prefix"
        assert len(on_disk) >= kept, f"kill {number}: bytes already on disk were thrown away"
        kept = len(on_disk)
        sidecar = part.with_name(part.name + ".json")
        if kept:
            assert json.loads(sidecar.read_text())["size"] == len(data)
    assert kept > 0, "no kill came after the first byte: the kills were not spread out"

    server.set_faults("/big.zip", rate=None)
    result = download(url, dest)
    assert dest.read_bytes() == data
    assert result.resumed_from == kept and not result.restarted
    assert leftovers(dest) == []  # no part file, sidecar or lock left behind
    # each kill may lose what was in flight, never the bytes already written
    assert server.bytes_sent["/big.zip"] - len(data) < 10 * MiB


# --------------------------------------------------------------------------------------------
# A flapping link


class FlappingProxy:
    """A TCP proxy to the loopback server whose link fails on a seeded schedule.

    Per connection it draws a fate: pass it through; reset it before any answer; cut the
    answer after a random number of bytes (a clean close or a reset); or stall it, sending
    nothing until the client gives up. Between connections the link may go down for a moment:
    the listening socket is closed, so connecting is refused, then reopened on the same port.
    """

    FATES = ("ok", "reset", "cut", "cut-reset", "stall")
    WEIGHTS = (3, 2, 4, 2, 1)

    def __init__(self, target_port: int, seed: int, max_stalls: int = 2) -> None:
        self.target_port = target_port
        self.rng = random.Random(seed)
        self.max_stalls = max_stalls
        # The first connections meet every fault in a shuffled order (so each one happens for
        # sure), the rest a weighted random one.
        self.plan = ["down", "reset", "cut", "cut-reset", "stall"] * 2
        self.rng.shuffle(self.plan)
        self.seen: Counter[str] = Counter()
        self.stop = threading.Event()
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @staticmethod
    def _listen(port: int) -> socket.socket:
        for _ in range(100):  # reopening the same port can take a moment
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                time.sleep(0.01)
                continue
            sock.listen(16)
            sock.settimeout(0.05)
            return sock
        raise OSError(f"cannot listen on port {port} again")

    def __enter__(self) -> FlappingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            planned = self.plan[0] if self.plan else None
            if planned == "down" or (planned is None and self.rng.random() < 0.1):
                # the link goes down for a moment: connecting is refused
                if self.plan:
                    self.plan.pop(0)
                self.seen["down"] += 1
                self.listener.close()
                self.stop.wait(self.rng.uniform(0.05, 0.2))
                self.listener = self._listen(self.port)
                continue
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            fate = self.plan.pop(0) if self.plan else self.rng.choices(self.FATES, self.WEIGHTS)[0]
            if fate == "stall" and self.seen["stall"] >= self.max_stalls:
                fate = "cut"
            self.seen[fate] += 1
            cut = self.rng.randrange(256 << 10)
            threading.Thread(target=self._relay, args=(client, fate, cut), daemon=True).start()

    def _relay(self, client: socket.socket, fate: str, cut: int) -> None:
        with client:
            if fate == "reset":
                _reset(client)
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            with upstream:
                request = client.recv(65536)  # GET requests fit in one read
                upstream.sendall(request)
                if fate == "stall":
                    self.stop.wait(3.0)  # longer than the client's timeout
                    return
                sent = 0
                limit = cut if fate in ("cut", "cut-reset") else None
                while limit is None or sent < limit:
                    chunk = upstream.recv(65536 if limit is None else min(65536, limit - sent))
                    if not chunk:
                        return
                    try:
                        client.sendall(chunk)
                    except OSError:
                        return
                    sent += len(chunk)
                if fate == "cut-reset":
                    _reset(client)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a clean FIN, as a crashed middlebox would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_flapping_link_with_server_errors_still_ends_in_the_exact_file(server, tmp_path):
    rng = random.Random(7)
    data = rng.randbytes(3 * MiB + 321)
    server.add("/m.zip", data, fail_first=2, fail_status=503)  # and a 503 burst at the start
    dest = tmp_path / "m.zip"
    with FlappingProxy(server.port, seed=11) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/m.zip"
        result = download(url, dest, backoff=0.01, timeout=1.0, retries=60)
    assert dest.read_bytes() == data
    assert leftovers(dest) == []
    # the link really did flap, in every way it can
    for fate in ("down", "reset", "cut", "cut-reset", "stall"):
        assert proxy.seen[fate] > 0, f"the schedule never produced {fate!r}: {proxy.seen}"
    # every cut was resumed where it stopped: no byte on disk was ever thrown away
    assert result.size == len(data) and not result.restarted
