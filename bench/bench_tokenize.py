"""Side-by-side tokenization benchmark: bertctl, the pure-Python reference, transformers, Rust.

Run from the repository root (with the test extra installed):

    .venv/bin/python bench/bench_tokenize.py [--data DIR] [--repeats 3] [--json PATH]

Every implementation tokenizes the same real text, lowercased, with Google's uncased vocab
(bertctl's bundled copy), producing token ids without special tokens:

* bertctl     `bertctl.tokenization.Tokenizer.tokenize_with_ids`, line by line;
* reference   `tests/reference_tokenization.py`, Google's steps one character at a time;
* transformers-legacy  transformers' `BertTokenizerLegacy` (a pure-Python port; it differs from
  Google in edge cases), `convert_tokens_to_ids(tokenize(line))`, when importable;
* rust-tokenizers  the `tokenizers` BertWordPiece pipeline (BertNormalizer(lowercase=True),
  BertPreTokenizer, WordPiece with max_input_chars_per_word=200), `encode_batch` over all lines,
  which uses every core; the ceiling, not a candidate (it differs from Google in edge cases).

Inputs: (a) the real multilingual corpus of tests/multilingual_corpus.py (Babel CLDR data and
Faker locale providers); (b) real English text, the sentences of GLUE SST-2 train and MRPC train
from the shared data folder (skipped with a message when absent).

Timing: one untimed warm-up pass per implementation over the first lines of the input (imports,
regexes, Unicode tables built once per process), then --repeats rounds in which every
implementation makes one full pass in turn (so a busy machine slows them alike); the best
wall-clock pass counts, and its process CPU time is shown beside it (for the Python
implementations CPU time is what a quiet machine would measure; Rust's encode_batch spreads over
every core, so its CPU time exceeds its wall time). Each pass builds a fresh tokenizer outside
the timed region, so bertctl's per-instance word cache starts empty and only
what it learns within the pass helps it. The last pass's ids are compared line by line with the
reference's ("lines != ref").
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from multilingual_corpus import corpus_digest, multilingual_lines  # noqa: E402
from reference_tokenization import ReferenceTokenizer  # noqa: E402

from bertctl.tokenization import Tokenizer, bundled_vocab, bundled_vocab_path  # noqa: E402

WARMUP_LINES = 5_000

# A runner takes the lines and returns one list of ids per line.
Runner = Callable[[list[str]], list[list[int]]]


@dataclass
class Result:
    implementation: str
    seconds: float
    cpu_seconds: float
    tokens: int
    tokens_per_second: float
    speedup_vs_reference: float | None = None
    lines_differing_from_reference: int | None = None
    note: str = ""
    first_differing_lines: list[str] = field(default_factory=list)


@dataclass
class InputReport:
    name: str
    description: str
    lines: int
    bytes: int
    chars: int
    sha256: str = ""
    reference_tokens: int = 0
    results: list[Result] = field(default_factory=list)
    cli: dict | None = None


# --------------------------------------------------------------------------------------------
# Implementations: each factory builds a fresh tokenizer and returns a runner
# --------------------------------------------------------------------------------------------


def bertctl_factory() -> Runner:
    tokenizer = Tokenizer(bundled_vocab(), do_lower_case=True)
    encode = tokenizer.tokenize_with_ids
    return lambda lines: [encode(line)[1] for line in lines]


def reference_factory() -> Runner:
    tokenizer = ReferenceTokenizer(bundled_vocab().ids, do_lower_case=True)
    return lambda lines: [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(x)) for x in lines]


def legacy_factory() -> Runner:
    from transformers.models.bert import BertTokenizerLegacy

    tokenizer = BertTokenizerLegacy(str(bundled_vocab_path()), do_lower_case=True)
    return lambda lines: [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(x)) for x in lines]


def rust_factory() -> Runner:
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    tokenizer = tokenizers.Tokenizer(
        WordPiece(dict(bundled_vocab().ids), unk_token="[UNK]", max_input_chars_per_word=200)
    )
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def run(lines: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch(lines, add_special_tokens=False)]

    return run


def implementations() -> list[tuple[str, Callable[[], Runner], str]]:
    found: list[tuple[str, Callable[[], Runner], str]] = [
        ("bertctl", bertctl_factory, "fast path, exact"),
        ("reference", reference_factory, "pure Python, char by char"),
    ]
    try:
        from transformers.models.bert import BertTokenizerLegacy  # noqa: F401

        found.append(("transformers-legacy", legacy_factory, "pure Python port"))
    except ImportError:
        print("transformers' BertTokenizerLegacy not importable: skipped", file=sys.stderr)
    try:
        import tokenizers  # noqa: F401

        found.append(("rust-tokenizers", rust_factory, f"encode_batch, {cores()} threads"))
    except ImportError:
        print("tokenizers not importable: skipped", file=sys.stderr)
    return found


# --------------------------------------------------------------------------------------------
# Inputs and machine
# --------------------------------------------------------------------------------------------


def english_lines(data: Path) -> list[str] | None:
    """GLUE SST-2 train sentences and both MRPC train strings, header rows dropped."""
    sst2, mrpc = data / "glue" / "SST-2" / "train.tsv", data / "glue" / "MRPC" / "train.tsv"
    if not (sst2.is_file() and mrpc.is_file()):
        return None
    lines: list[str] = []
    with sst2.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        lines.extend(row[0] for row in rows)
    with mrpc.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        for row in rows:
            lines.extend((row[3], row[4]))
    return lines


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("tokenizers", "transformers", "babel", "faker"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "absent"
    return {
        "cpu": cpu,
        "cores": str(cores()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        **versions,
    }


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def timed_pass(factory: Callable[[], Runner], lines: list[str]):
    """One full pass with a fresh tokenizer: (wall seconds, CPU seconds, ids per line)."""
    run = factory()
    gc.collect()
    gc.disable()  # as timeit does: the corpus builder left Babel's data behind to traverse
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        output = run(lines)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()
    return wall, cpu, output


def time_cli(lines: list[str], repeats: int) -> dict | None:
    command = shutil.which("bertctl")
    beside_python = Path(sys.executable).parent / "bertctl"
    if command is None and beside_python.is_file():
        command = str(beside_python)  # the virtualenv's script, when it is not activated
    if command is None:
        print("no bertctl command on PATH: end-to-end CLI timing skipped", file=sys.stderr)
        return None

    def best_run(path: Path, extra: list[str]) -> float | None:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            done = subprocess.run(
                [command, "tokenize", "--input", str(path), "--json", *extra],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                print(f"bertctl tokenize failed: {done.stderr.strip()[:300]}", file=sys.stderr)
                return None
            best = min(best, elapsed)
        return best

    path_size = len(("\n".join(lines) + "\n").encode("utf-8"))
    with tempfile.TemporaryDirectory() as folder:
        path, one_line = Path(folder) / "input.txt", Path(folder) / "one_line.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        one_line.write_text(lines[0] + "\n", encoding="utf-8")
        # one process, then the default (a process per core for files over 4 MiB)
        single, default = best_run(path, ["--workers", "1"]), best_run(path, [])
        startup = best_run(one_line, [])
    if single is None or default is None or startup is None:
        return None
    return {
        "command": "bertctl tokenize --input FILE --json > /dev/null",
        "seconds_one_worker": single,
        "seconds": default,
        "one_line_seconds": startup,
        "input_bytes": path_size,
    }


def bench_input(
    name: str, description: str, lines: list[str], repeats: int, with_cli: bool
) -> InputReport:
    report = InputReport(
        name=name,
        description=description,
        lines=len(lines),
        bytes=sum(len(line.encode("utf-8")) + 1 for line in lines),
        chars=sum(len(line) for line in lines),
        sha256=corpus_digest(lines),
    )
    chosen = implementations()
    for implementation, factory, _ in chosen:
        print(f"  {name}: warming up {implementation}", file=sys.stderr, flush=True)
        factory()(lines[:WARMUP_LINES])
    best: dict[str, tuple[float, float]] = {}
    outputs: dict[str, list[list[int]]] = {}
    for round_number in range(1, repeats + 1):
        for implementation, factory, _ in chosen:
            print(f"  {name}: round {round_number}, {implementation}", file=sys.stderr, flush=True)
            wall, cpu, outputs[implementation] = timed_pass(factory, lines)
            if implementation not in best or wall < best[implementation][0]:
                best[implementation] = (wall, cpu)
    for implementation, _, note in chosen:
        wall, cpu = best[implementation]
        tokens = sum(len(ids) for ids in outputs[implementation])
        report.results.append(Result(implementation, wall, cpu, tokens, tokens / wall, note=note))
    reference = outputs["reference"]
    reference_seconds = next(r.seconds for r in report.results if r.implementation == "reference")
    report.reference_tokens = sum(len(ids) for ids in reference)
    for result in report.results:
        result.speedup_vs_reference = reference_seconds / result.seconds
        mine = outputs[result.implementation]
        differing = [i for i, (a, b) in enumerate(zip(mine, reference, strict=True)) if a != b]
        result.lines_differing_from_reference = len(differing)
        result.first_differing_lines = [lines[i] for i in differing[:5]]
    if with_cli:
        report.cli = time_cli(lines, repeats)
    return report


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def markdown(reports: list[InputReport], host: dict[str, str], repeats: int) -> str:
    out = [
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['python']}, {host['os']}; "
        f"tokenizers {host['tokenizers']}, transformers {host['transformers']}, "
        f"babel {host['babel']}, faker {host['faker']}.",
        f"Best of {repeats} interleaved timed passes after a warm-up; lowercased, uncased vocab, "
        "ids without special tokens; × reference = reference seconds / seconds.",
        "",
    ]
    for report in reports:
        out += [
            f"### {report.name}",
            "",
            f"{report.description}: {report.lines:,} lines, {report.chars:,} characters, "
            f"{report.bytes:,} bytes UTF-8, {report.reference_tokens:,} tokens (reference); "
            f"SHA-256 of the lines joined by newlines {report.sha256[:16]}….",
            "",
            "| implementation | seconds | CPU s | tokens | tokens/s | × reference | lines ≠ ref |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report.results:
            out.append(
                f"| {r.implementation} ({r.note}) | {r.seconds:.2f} | {r.cpu_seconds:.2f} | "
                f"{r.tokens:,} | "
                f"{r.tokens_per_second:,.0f} | {r.speedup_vs_reference:.2f}× | "
                f"{r.lines_differing_from_reference:,} |"
            )
        for r in report.results:
            if r.first_differing_lines:
                shown = ", ".join(repr(line) for line in r.first_differing_lines[:3])
                out += ["", f"{r.implementation} differs from the reference on e.g. {shown}."]
        if report.cli:
            cli = report.cli
            reference = next(r for r in report.results if r.implementation.startswith("reference"))
            tokens = reference.tokens
            out += [
                "",
                f"End to end, `{cli['command']}` on the same input written to a file "
                f"({cli['input_bytes'] / 1e6:.1f} MB), best of {repeats}, start-up included "
                f"({cli['one_line_seconds']:.2f} s for a one-line file):",
                "",
                "| command | seconds | tokens/s | vs reference (in-process) |",
                "|---|---:|---:|---:|",
                f"| `--workers 1` | {cli['seconds_one_worker']:.2f} | "
                f"{tokens / cli['seconds_one_worker']:,.0f} | "
                f"{reference.seconds / cli['seconds_one_worker']:.2f}× |",
                f"| default (one process per core) | {cli['seconds']:.2f} | "
                f"{tokens / cli['seconds']:,.0f} | {reference.seconds / cli['seconds']:.2f}× |",
            ]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--limit", type=int, help="use only the first N lines of each input")
    parser.add_argument(
        "--inputs",
        default="multilingual,english",
        help="comma-separated: multilingual, english (default: both)",
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.inputs.split(",")}
    host = machine()
    reports: list[InputReport] = []
    with_cli = True
    if "multilingual" in chosen:
        lines = multilingual_lines()[: args.limit]
        description = "Real multilingual text (Babel CLDR locale data + Faker locale providers)"
        reports.append(bench_input("multilingual", description, lines, args.repeats, with_cli))
    if "english" in chosen:
        lines = english_lines(args.data)
        if lines is None:
            print(f"no GLUE SST-2/MRPC under {args.data}: English input skipped", file=sys.stderr)
        else:
            lines = lines[: args.limit]
            description = "Real English text (GLUE SST-2 train + MRPC train sentences)"
            reports.append(bench_input("english", description, lines, args.repeats, with_cli))
    print(markdown(reports, host, args.repeats))
    if args.json:
        payload = {"machine": host, "repeats": args.repeats, "inputs": [asdict(r) for r in reports]}
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
