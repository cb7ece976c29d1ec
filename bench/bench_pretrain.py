"""Pretraining side by side: `bertctl pretrain run` vs transformers' Trainer, and `prepare` scaling.

1. **Training tokens/s**, one contender after the other in one process, same model (the real
   small BERT all-MiniLM-L6-v2), same text, same batch (32 sequences of up to 128 tokens), same
   machine, a fixed number of optimizer steps each:

   - `bertctl`: `bertctl pretrain run` (in-process: `bertctl.train.pretrain.pretrain`) on the
     text prepared by `bertctl pretrain prepare` (Google's instances, dupe factor 5):
     BertForPreTraining, MLM loss at the ~20 masked positions only (gathered), plus NSP;
   - `trainer`: transformers' `Trainer` with `DataCollatorForLanguageModeling`
     (mlm_probability 0.15) on BertForMaskedLM, the text tokenized by the model's fast tokenizer
     and cut into blocks of 128 tokens as transformers' run_mlm.py does; it computes vocabulary
     logits at all 128 positions.

   Tokens are real (non-padding) tokens fed to the model: every Trainer block is 128 real
   tokens; bertctl's instances average fewer (Google's short-sequence and truncation rules), and
   only real tokens are counted for it. Two rates per contender: over all steps, and over the
   steps after the first (the steady state: no first-call allocation or thread start-up).
   Model loading, tokenization and data preparation are outside the timed loops.

2. **Data preparation throughput** of `bertctl pretrain prepare` (`bertctl.pretraining_data.
   prepare`) with 1 worker and with N, on a corpus of several shards: CPython's documentation
   topics (the test suite's `stdlib_docs_corpus`), repeated `--copies` times, `--shard-documents`
   documents per shard; the wall time of the whole call (worker start-up included), and the
   outputs compared byte for byte.

3. **The demo** (`--only demo`): Google's README runs 20 steps from BERT-Base on sample_text.txt
   and reaches masked_lm_accuracy 0.985 (it overfits on purpose). Here the real small BERT is
   continued the same way through the real commands, with Google's metrics every few steps.

    python bench/bench_pretrain.py                         # both parts: 3 rounds of 10 steps
    python bench/bench_pretrain.py --only train --rounds 1 # training only, one round
    python bench/bench_pretrain.py --only prepare --workers 2
    python bench/bench_pretrain.py --only demo             # Google's README demo, in spirit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench_finetune import machine, minilm  # noqa: E402


def run_bertctl(args, model: Path, text: Path, tmp: Path) -> dict:
    from bertctl.install import noop_reporter
    from bertctl.modelref import tokenizer_for
    from bertctl.pretraining_data import PrepareConfig, prepare
    from bertctl.train.pretrain import PretrainConfig, pretrain

    choice = tokenizer_for(str(model), None, None)
    data = tmp / "bertctl-data"
    if not data.exists():  # prepared once; every round trains on the same shards
        prepare([text], data, choice.tokenizer, PrepareConfig(dupe_factor=5), workers=1)
    runs = tmp / "bertctl-runs"
    cfg = PretrainConfig(
        data=str(data),
        model=str(model),
        out=str(runs / f"run-{len(list(runs.glob('run-*'))) if runs.exists() else 0}"),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=2e-5,
        device="cpu",
        eval_batches=0,
        save_every=10**9,
    )
    summary = pretrain(cfg, noop_reporter())
    records = [
        json.loads(line)
        for line in (Path(cfg.out) / "train_log.jsonl").read_text().splitlines()
        if '"tokens"' in line
    ]
    # cumulative seconds at each step = cumulative tokens / cumulative rate
    tokens = [r["tokens"] for r in records]
    seconds = [sum(tokens[: i + 1]) / r["tokens_per_second"] for i, r in enumerate(records)]
    return {
        "steps": summary.steps,
        "train_seconds": summary.train_seconds,
        "tokens": sum(tokens),
        "tokens_per_second": summary.tokens_per_second,
        "steady_tokens_per_second": sum(tokens[1:]) / (seconds[-1] - seconds[0]),
        "tokens_per_sequence": sum(tokens) / (summary.steps * args.batch_size),
        "final_loss": records[-1]["loss"],
    }


def run_trainer(args, model: Path, text: Path, tmp: Path) -> dict:
    from transformers import (
        AutoTokenizer,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    tokenizer = AutoTokenizer.from_pretrained(model)
    lines = [line.strip() for line in text.read_text(encoding="utf-8").splitlines()]
    ids: list[int] = []
    for encoded in tokenizer([ln for ln in lines if ln])["input_ids"]:
        ids.extend(encoded)  # run_mlm.py: each line with its specials, then concatenated
    size = 128
    blocks = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    needed = args.steps * args.batch_size
    blocks = (blocks * (needed // len(blocks) + 1))[:needed]
    dataset = [{"input_ids": block} for block in blocks]  # a map-style dataset to Trainer

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.start = 0.0

        def on_train_begin(self, *a, **k) -> None:
            self.start = time.monotonic()

        def on_step_end(self, *a, **k) -> None:
            self.ends.append(time.monotonic())

    set_seed(42)
    net = BertForMaskedLM.from_pretrained(model, attn_implementation="sdpa")
    clock = Clock()
    trainer = Trainer(
        model=net,
        args=TrainingArguments(
            output_dir=str(tmp / "trainer"),
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-5,
            max_steps=args.steps,
            weight_decay=0.01,
            adam_epsilon=1e-6,
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=42,
        ),
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
        callbacks=[clock],
    )
    result = trainer.train()
    tokens = args.steps * args.batch_size * size
    seconds = clock.ends[-1] - clock.start
    steady = clock.ends[-1] - clock.ends[0]
    return {
        "steps": result.global_step,
        "train_seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "steady_tokens_per_second": tokens * (args.steps - 1) / args.steps / steady,
        "tokens_per_sequence": size,
        "final_loss": result.training_loss,
    }


def bench_training(args, tmp: Path) -> list[str]:
    import statistics

    import torch

    model = args.model or minilm()
    text = args.text
    names = args.contenders.split(",")
    # Rounds alternate the contenders (A B A B ...) so that a slow spell of a shared machine
    # falls on both; each contender's rate is the median of its rounds.
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(args.rounds):
        for name in names:
            print(
                f"round {index + 1}: {name} ({args.steps} steps) ...", file=sys.stderr, flush=True
            )
            run = run_bertctl if name == "bertctl" else run_trainer
            rounds[name].append(run(args, model, text, tmp))
            print(f"  {name}: {rounds[name][-1]}", file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name])

    ours = "bertctl" in rounds
    lines = [
        f"Machine: {machine()}; torch threads {torch.get_num_threads()}",
        f"Model: all-MiniLM-L6-v2 ({model}); text: {text.name}; batch {args.batch_size} x 128; "
        f"{args.steps} optimizer steps each, {args.rounds} alternating round(s), medians; "
        "fp32 on the CPU.",
        "",
        "| contender | steps | train s | tokens/sequence | tokens/s (all steps) | "
        "tokens/s (after step 1) | bertctl speed-up (after step 1) | per round |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        steady = median(name, "steady_tokens_per_second")
        ratio = f"{median('bertctl', 'steady_tokens_per_second') / steady:.2f}×" if ours else "–"
        each = ", ".join(f"{r['steady_tokens_per_second']:,.0f}" for r in rounds[name])
        lines.append(
            f"| {name} | {args.steps} | {median(name, 'train_seconds'):.1f} | "
            f"{median(name, 'tokens_per_sequence'):.1f} | {median(name, 'tokens_per_second'):,.0f} | "
            f"{steady:,.0f} | {ratio} | {each} |"
        )
    if ours and len(names) > 1 and args.rounds > 1:
        for name in names:
            if name != "bertctl":
                pairs = [
                    b["steady_tokens_per_second"] / t["steady_tokens_per_second"]
                    for b, t in zip(rounds["bertctl"], rounds[name], strict=True)
                ]
                lines.append(
                    f"\nbertctl / {name}, round by round: " + ", ".join(f"{p:.2f}×" for p in pairs)
                )
    args.results["training"] = rounds
    return lines


def bench_prepare(args, tmp: Path) -> list[str]:
    from test_pretrain_data import stdlib_docs_corpus

    from bertctl.pretraining_data import PrepareConfig, prepare
    from bertctl.tokenization import Tokenizer, bundled_vocab

    one = stdlib_docs_corpus(tmp / "stdlib_docs.txt").read_text(encoding="utf-8")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n\n".join([one.strip()] * args.copies) + "\n", encoding="utf-8")
    tokenizer = Tokenizer(bundled_vocab(), do_lower_case=True)
    cfg = PrepareConfig(shard_documents=args.shard_documents)
    rows, digests, times = [], {}, {}
    counts = [1, *[w for w in args.workers if w != 1]]
    for workers in counts:
        out = tmp / f"prepared-{workers}"
        print(f"prepare with {workers} worker(s) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = prepare([corpus], out, tokenizer, cfg, workers=workers)
        times[workers] = time.monotonic() - started
        digest = hashlib.sha256()
        for path in sorted(out.rglob("*.npy")):
            digest.update(path.read_bytes())
        digests[workers] = digest.hexdigest()
        totals = result.manifest["totals"]
        rows.append((workers, times[workers], totals))
        print(f"  {times[workers]:.1f} s", file=sys.stderr, flush=True)
    size = corpus.stat().st_size
    totals = rows[0][2]
    lines = [
        f"Corpus: CPython's documentation topics x {args.copies} ({size / 1e6:.1f} MB, "
        f"{totals['documents']:,} documents, {totals['corpus_tokens']:,} WordPiece tokens), "
        f"{totals['shards']} shards of {args.shard_documents} documents, Google's defaults "
        f"(dupe factor 10): {totals['instances']:,} instances.",
        "",
        "| workers | seconds | MB/s | instances/s | speed-up vs 1 | same bytes as 1 worker |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for workers, seconds, t in rows:
        lines.append(
            f"| {workers} | {seconds:.1f} | {size / 1e6 / seconds:.2f} | "
            f"{t['instances'] / seconds:,.0f} | {times[1] / seconds:.2f}× | "
            f"{'yes' if digests[workers] == digests[1] else 'NO'} |"
        )
    args.results["prepare"] = {
        str(w): {"seconds": s, "instances": t["instances"]} for w, s, t in rows
    }
    return lines


def bench_demo(args, tmp: Path) -> list[str]:
    """Google's README demo in spirit: continue the real small BERT on sample_text.txt until it
    overfits, through the real commands, and report Google's metrics at every evaluation."""
    import subprocess

    model = args.model or minilm()
    data, run = tmp / "demo-data", tmp / "demo-run"
    prepare = ["pretrain", "prepare", str(args.text), "--out", str(data), "--model", str(model)]
    prepare += ["--dupe-factor", "5"]
    train = ["pretrain", "run", str(data), "--model", str(model), "--out", str(run), "--cpu"]
    train += ["--steps", str(args.demo_steps), "--lr", str(args.demo_lr)]
    train += ["--eval-every", str(args.demo_eval_every)]
    started = time.monotonic()
    for command in (prepare, train):
        print("bertctl " + " ".join(command), file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "bertctl", *command], check=True)
    wall = time.monotonic() - started
    history = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "run.json").read_text())
    instances = json.loads((data / "manifest.json").read_text())["totals"]["instances"]
    lines = [
        f"Continuing all-MiniLM-L6-v2 (no MLM or NSP head: both initialised as Google does) on "
        f"{args.text.name} ({instances} instances, dupe factor 5), batch 32, lr {args.demo_lr:g}, "
        f"10% warmup, {args.demo_steps} steps on the CPU: {info['train_seconds']:.0f} s of "
        f"training, {wall:.0f} s in all (both commands, start-up and evaluations included).",
        "",
        "| step | masked_lm_accuracy | masked_lm_loss | next_sentence_accuracy | "
        "next_sentence_loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for record in history:
        m = record["metrics"]
        lines.append(
            f"| {record['step']} | {m['masked_lm_accuracy']:.4f} | {m['masked_lm_loss']:.4f} | "
            f"{m['next_sentence_accuracy']:.4f} | {m['next_sentence_loss']:.4f} |"
        )
    args.results["demo"] = {"history": history, "train_seconds": info["train_seconds"]}
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="train,prepare", help="train, prepare, demo")
    parser.add_argument("--model", type=Path, default=None, help="default: all-MiniLM-L6-v2")
    parser.add_argument(
        "--text", type=Path, default=REPO.parent / "shared" / "data" / "sample_text.txt"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--contenders", default="trainer,bertctl")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 2])
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--shard-documents", type=int, default=40)
    parser.add_argument("--demo-steps", type=int, default=60)
    parser.add_argument("--demo-lr", type=float, default=1e-4)
    parser.add_argument("--demo-eval-every", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.results = {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        if "train" in args.only:
            lines += bench_training(args, Path(tmp))
        if "prepare" in args.only:
            lines += ["", *bench_prepare(args, Path(tmp))]
        if "demo" in args.only:
            lines += ["", *bench_demo(args, Path(tmp))]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(args.results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
