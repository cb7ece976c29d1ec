"""Converting a BERT-Base-sized TF checkpoint, side by side with just reading (and copying) it.

    python bench/bench_convert.py                      # generate the checkpoint once, then measure
    python bench/bench_convert.py --checkpoint DIR/bert_model.ckpt   # an existing release

The checkpoint must be real TensorFlow output, so bertctl's own code does not write it: the first
run asks a Python that has TensorFlow (``--tf-python``, else ``$BERTCTL_TF_PYTHON``, else
``.tfvenv/bin/python``) to save random BERT-Base weights (L-12, H-768, 30522 tokens, with the
pretraining heads: 110,106,428 float32 = 440 MB, the size of Google's uncased_L-12_H-768_A-12) with
``tf.compat.v1.train.Saver`` into ``$BERTCTL_HOME/bench/base_release/``, and reuses it after.
Without TensorFlow, pass ``--checkpoint`` (e.g. an extracted Google release).

Measured, alternating, ``--repeat`` times each, median reported:

* read: every byte of the data file into one reused buffer (whatever the page cache holds; the
  file was just written or read, so this is the warm-cache number, the hardest to match);
* copy: the data file to a new file, fsynced (the floor for anything that writes its size anew);
* convert: ``bertctl.convert.convert`` in a fresh subprocess, timed inside it, its peak RSS from
  ``os.wait4`` (the child's own ``ru_maxrss``, like ``getrusage(RUSAGE_CHILDREN)`` but for that
  child alone, so the TensorFlow generator's RSS cannot leak into it); also the RSS of a child that
  only imports what convert imports, to show the interpreter's share.

Goals: convert <= 2x read, peak RSS <= 1.3x the checkpoint. Results are appended to
BENCHMARKS.md under "## Conversion" (``--no-write`` to skip). Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASE_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
BASE_PARAMETERS_WITH_HEADS = 110_106_428  # REFERENCE §1

# Run by the TensorFlow Python: reuse the fixture script's variable table, weights and Saver.
GENERATE = """
import json, shutil, sys
from pathlib import Path
sys.path.insert(0, {fixtures!r})
from make_tf_fixtures import bert_variables, random_weights, save_float_model
folder = Path({folder!r})
config = json.loads({config!r})
weights = random_weights(bert_variables(config, heads=True), seed=12)
save_float_model(folder / "bert_model.ckpt", weights)
(folder / "bert_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\\n")
shutil.copyfile({vocab!r}, folder / "vocab.txt")
print(sum(w.size for w in weights.values()))
"""

# Run in a fresh child per measurement; prints the conversion's own wall time.
CONVERT = """
import json, sys, time
from pathlib import Path
from bertctl import convert as c
args = json.loads(sys.argv[1])
start = time.perf_counter()
result = c.convert(args["prefix"], args["out"], config_path=args["config"],
                   vocab_path=args["vocab"], lowercase=True)
print(json.dumps({"seconds": time.perf_counter() - start, "tensors": result.tensors,
                  "bytes": result.bytes}))
"""
IMPORTS_ONLY = "import numpy, google_crc32c, bertctl.convert, bertctl.tokenization"


def tf_python(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("BERTCTL_TF_PYTHON"), ".tfvenv/bin/python"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def ensure_checkpoint(cache: Path, python: str | None) -> Path:
    folder = cache / "base_release"
    prefix = folder / "bert_model.ckpt"
    if (folder / "bert_model.ckpt.index").is_file() and (folder / "vocab.txt").is_file():
        return prefix
    if python is None:
        sys.exit(
            "no TensorFlow Python found to write the checkpoint: pass --tf-python PATH "
            "(a Python with tensorflow-cpu) or --checkpoint PREFIX"
        )
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    script = GENERATE.format(
        fixtures=str(REPO / "tests" / "fixtures"),
        folder=str(partial),
        config=json.dumps(BASE_CONFIG),
        vocab=str(REPO / "bertctl" / "data" / "uncased_vocab.txt"),
    )
    print(f"writing a BERT-Base-sized checkpoint with {python} ...", file=sys.stderr)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"TensorFlow failed:\n{done.stderr[-3000:]}")
    count = int(done.stdout.split()[-1])
    assert count == BASE_PARAMETERS_WITH_HEADS, count
    os.replace(partial, folder)
    return prefix


def read_all(path: Path, buffer: bytearray) -> float:
    view = memoryview(buffer)
    start = time.perf_counter()
    with path.open("rb", buffering=0) as handle:
        while handle.readinto(view):
            pass
    return time.perf_counter() - start


def copy_fsynced(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    shutil.copyfile(src, dst)
    with dst.open("rb+") as handle:
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    dst.unlink()
    return seconds


def drop_caches() -> bool:
    """Empty the page cache (root on Linux only), so the next read comes from the disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def child(code: str, *args: str) -> tuple[str, int]:
    """Run ``code`` in a fresh Python; return its stdout and its own peak RSS in bytes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=env, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"child failed ({proc.returncode})")
    return out, usage.ru_maxrss * 1024  # Linux reports KiB


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import numpy

    return (
        f"{cpu}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}"
    )


def replace_section(path: Path, heading: str, text: str) -> None:
    """Put `text` in place of the section that starts with `heading` (or append it).

    The section's hand-written notes (after a line `<!-- notes -->`) are kept.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = old.find(heading + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")
        return
    end = old.find("\n## ", start + len(heading))
    end = len(old) if end < 0 else end + 1
    section = old[start:end]
    notes = section[section.find("<!-- notes -->") :] if "<!-- notes -->" in section else ""
    new = text.rstrip("\n") + "\n\n" + (notes.rstrip("\n") + "\n\n" if notes else "")
    path.write_text(old[:start] + new + old[end:].lstrip("\n"), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="an existing release checkpoint prefix")
    parser.add_argument("--config", help="its bert_config.json (default: beside it)")
    parser.add_argument("--vocab", help="its vocab.txt (default: beside it)")
    parser.add_argument("--tf-python", help="a Python with TensorFlow, to write the checkpoint")
    parser.add_argument("--cache", help="where the generated checkpoint lives")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    from bertctl import paths
    from bertctl.tfcheckpoint import Checkpoint

    if args.checkpoint:
        prefix = Path(args.checkpoint)
        source = "a given checkpoint"
    else:
        cache = Path(args.cache) if args.cache else paths.home() / "bench"
        prefix = ensure_checkpoint(cache, tf_python(args.tf_python))
        source = "random BERT-Base weights saved by TensorFlow's Saver"
    ckpt = Checkpoint(prefix)
    folder = ckpt.prefix.parent
    config = Path(args.config) if args.config else folder / "bert_config.json"
    vocab = Path(args.vocab) if args.vocab else folder / "vocab.txt"
    data_files = [ckpt.data_path(i) for i in range(ckpt.num_shards)]
    size = sum(p.stat().st_size for p in data_files)
    model_bytes = sum(
        e.size for n, e in ckpt.entries.items() if "adam_" not in n and n != "global_step"
    )

    work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=folder.parent))
    buffer = bytearray(8 << 20)
    reads, copies, converts, rss = [], [], [], []
    try:
        for path in data_files:  # touch once so every repeat starts from the same cache state
            read_all(path, buffer)
        for i in range(args.repeat):
            reads.append(sum(read_all(p, buffer) for p in data_files))
            copies.append(sum(copy_fsynced(p, work / "copy") for p in data_files))
            out = work / f"out{i}"
            spec = {"prefix": str(ckpt.prefix), "out": str(out), "config": str(config)}
            spec["vocab"] = str(vocab)
            printed, peak = child(CONVERT, json.dumps(spec))
            converts.append(json.loads(printed)["seconds"])
            rss.append(peak)
            shutil.rmtree(out)
        # Cold: the checkpoint comes from the disk, as when converting a release unpacked
        # earlier. Both the plain read and the conversion start from an empty page cache.
        cold_reads, cold_converts = [], []
        for i in range(args.repeat if drop_caches() else 0):
            drop_caches()
            cold_reads.append(sum(read_all(p, buffer) for p in data_files))
            drop_caches()
            out = work / f"cold{i}"
            spec = {"prefix": str(ckpt.prefix), "out": str(out), "config": str(config)}
            spec["vocab"] = str(vocab)
            printed, _ = child(CONVERT, json.dumps(spec))
            cold_converts.append(json.loads(printed)["seconds"])
            shutil.rmtree(out)
        _, floor = child(IMPORTS_ONLY)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    read_s, copy_s, conv_s = (statistics.median(x) for x in (reads, copies, converts))
    peak = max(rss)
    mb = 1e6
    rows = [
        ("read every byte", read_s, reads, f"{size / mb / read_s:,.0f} MB/s"),
        ("copy + fsync", copy_s, copies, f"{size / mb / copy_s:,.0f} MB/s"),
        ("bertctl convert", conv_s, converts, f"{model_bytes / mb / conv_s:,.0f} MB/s"),
    ]
    cold = None
    if cold_reads:
        cold_read, cold_conv = statistics.median(cold_reads), statistics.median(cold_converts)
        cold = cold_conv / cold_read
        rows += [
            (
                "read every byte, cold cache",
                cold_read,
                cold_reads,
                f"{size / mb / cold_read:,.0f} MB/s",
            ),
            (
                "bertctl convert, cold cache",
                cold_conv,
                cold_converts,
                f"{model_bytes / mb / cold_conv:,.0f} MB/s",
            ),
        ]
    command = "python bench/bench_convert.py" + (" --checkpoint PREFIX" if args.checkpoint else "")
    lines = [
        "## Conversion",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, median of {args.repeat}; "
        "convert timed inside a fresh child process, so interpreter start is excluded)",
        "",
        f"- Machine: {machine()}",
        f"- Checkpoint: {source}; {len(ckpt.entries)} tensors, data {size:,} bytes "
        f"({size / mb:.0f} MB), model tensors {model_bytes:,} bytes",
        "",
        "| step | median s | min–max s | throughput | vs read | vs copy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, runs, rate in rows:
        lines.append(
            f"| {name} | {seconds:.3f} | {min(runs):.3f}–{max(runs):.3f} | {rate} | "
            f"{seconds / read_s:.1f}x | {seconds / copy_s:.2f}x |"
        )
    lines += [
        "",
        f"- Peak RSS of the conversion: {peak / mb:.0f} MB = {peak / size:.2f}x the checkpoint "
        f"(goal <= 1.3x); of which {floor / mb:.0f} MB is the interpreter with numpy and bertctl "
        f"imported, so the conversion itself adds {(peak - floor) / mb:.0f} MB.",
        f"- Convert vs read, warm page cache: {conv_s / read_s:.1f}x (goal <= 2x); vs copy + "
        f"fsync: {conv_s / copy_s:.2f}x.",
        f"- Convert vs read, cold page cache: {cold:.1f}x (goal <= 2x)."
        if cold is not None
        else "- Cold-cache rows need root (to write /proc/sys/vm/drop_caches); not measured.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        bench = REPO / "BENCHMARKS.md"
        replace_section(bench, "## Conversion", textwrap.dedent(text))
        print(f"wrote the Conversion section of {bench}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
