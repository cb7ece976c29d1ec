"""Download speed: bertctl.fetch.download against curl, from the same loopback server, in one run.

    .venv/bin/python bench/bench_download.py                 # 512 MiB, best of 3
    .venv/bin/python bench/bench_download.py --size 128 --variants

The server is tests/httpserver.py (its unthrottled path uses sendfile) in a separate process, so
neither client shares a GIL with it. Each client downloads the same random file to the same
folder; the file is deleted between runs. bertctl runs in-process (no interpreter start-up in its
time), curl as `curl -s -o FILE URL` (its process start-up, a few ms, is in its time). bertctl
fsyncs the file before renaming it (crash safety), curl does not: that flush is part of bertctl's
time. Every run starts after an untimed `sync`, so no run pays for an earlier run's writeback. `--variants` adds rows that isolate the cost of a per-chunk progress callback and of an
fsync per MiB. Prints a Markdown table; the goal is bertctl >= 0.9x curl.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

MiB = 1 << 20


def serve(root: str, ready: mp.Queue, stop: mp.Event) -> None:  # type: ignore[valid-type]
    """Child process: serve every file in `root` until `stop` is set."""
    from httpserver import LoopbackServer

    with LoopbackServer() as server:
        for path in Path(root).iterdir():
            server.add("/" + path.name, path)
        ready.put(server.port)
        stop.wait()  # type: ignore[attr-defined]


def make_file(path: Path, size: int) -> None:
    """`size` random bytes (random, so no layer along the way can compress or dedupe them)."""
    block = os.urandom(16 * MiB)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=512, help="file size in MiB (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client; best is kept")
    parser.add_argument("--dir", type=Path, default=None, help="working folder (default: a temp)")
    parser.add_argument("--variants", action="store_true", help="add progress/fsync variants")
    args = parser.parse_args()

    from bertctl import fetch

    work = Path(tempfile.mkdtemp(prefix="bench_download_", dir=args.dir))
    served, out = work / "served", work / "out"
    served.mkdir()
    out.mkdir()
    size = args.size * MiB
    make_file(served / "model.zip", size)
    expected = sha256(served / "model.zip")

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve, args=(str(served), ready, stop), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{ready.get(timeout=60)}/model.zip"

    def bertctl_run(dest: Path) -> None:
        fetch.download(url, dest)

    def bertctl_progress(dest: Path) -> None:
        seen = []
        fetch.download(url, dest, on_progress=lambda done, total: seen.append(done))

    def bertctl_sync_per_mib(dest: Path) -> None:
        saved = fetch._SYNC_EVERY
        fetch._SYNC_EVERY = MiB
        try:
            fetch.download(url, dest)
        finally:
            fetch._SYNC_EVERY = saved

    def curl_run(dest: Path) -> None:
        subprocess.run(["curl", "-s", "-o", str(dest), url], check=True)

    clients: list[tuple[str, Callable[[Path], None]]] = [("bertctl.fetch.download", bertctl_run)]
    if args.variants:
        clients += [
            ("bertctl, on_progress callback", bertctl_progress),
            ("bertctl, fsync every 1 MiB", bertctl_sync_per_mib),
        ]
    curl = shutil.which("curl")
    if curl:
        clients.append(("curl -s -o FILE URL", curl_run))
    else:
        print("curl not found: timing bertctl alone", file=sys.stderr)

    times: dict[str, list[float]] = {name: [] for name, _ in clients}
    try:
        for run in range(args.repeat):
            for name, client in clients:  # interleaved, so drift hits every client alike
                dest = out / "model.zip"
                dest.unlink(missing_ok=True)
                # Flush earlier runs' dirty pages first (untimed): curl leaves its file to the
                # kernel's writeback, which would otherwise land in the next client's time.
                os.sync()
                start = time.perf_counter()
                client(dest)
                elapsed = time.perf_counter() - start
                if run == 0 and sha256(dest) != expected:
                    raise SystemExit(f"{name}: downloaded file differs from the served one")
                times[name].append(elapsed)
                print(f"run {run + 1} {name}: {elapsed:.3f} s", file=sys.stderr)
    finally:
        stop.set()
        proc.join(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.size} MiB over loopback, best of {args.repeat}; {cpu_model()}, ", end="")
    print(f"{os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| client | best (s) | best MB/s | median (s) | vs curl (best) | vs curl (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    curl_times = times.get("curl -s -o FILE URL")
    for name, _ in clients:
        best, median = min(times[name]), statistics.median(times[name])
        ratios = ["-", "-"]
        if curl_times:
            ratios = [
                f"{min(curl_times) / best:.2f}x",
                f"{statistics.median(curl_times) / median:.2f}x",
            ]
        print(
            f"| {name} | {best:.3f} | {size / best / 1e6:,.0f} | {median:.3f} | "
            f"{ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    main()
