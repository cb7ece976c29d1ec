"""Memory planning: bertctl's estimate against published figures and against a GPU.

Two parts, each printing Markdown tables for BENCHMARKS.md (Memory planning):

- `--published` (any machine, arithmetic only): the estimate against Google's README table
  (largest batch on a 12 GB Titan X, TensorFlow 1.11, fp32, Adam) and against the measured
  bert-large V100 figure of REFERENCE §7.
- the grid (needs CUDA): BERT-Base and BERT-Large x sequence 128 and 512 x fp32 and bf16 x
  with and without gradient checkpointing. Each setting runs in a fresh process: a randomly
  initialised model of the release's shape (nothing is downloaded) built as `bertctl finetune`
  builds it (transformers, SDPA attention, Google's optimizer, autocast, gradient clipping),
  two training steps (the second has Adam's moments, as every later step does), and
  `torch.cuda.max_memory_allocated` against the estimate's `allocated` (its total less the
  allocator slack); `max_memory_reserved` is shown beside it.

    python bench/bench_memory.py --published
    python bench/bench_memory.py                      # the grid; skips without CUDA
    python bench/bench_memory.py --json grid.json
    python bench/bench_memory.py --models base --seqs 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bertctl import catalog, memory  # noqa: E402
from bertctl.bertconfig import BertConfig, check_config  # noqa: E402

MiB = memory.MiB
# Micro-batch per (model, seq): large enough that activations dominate, small enough for 78 GiB.
BATCH = {("base", 128): 32, ("base", 512): 16, ("large", 128): 32, ("large", 512): 8}


def config_of(name: str) -> BertConfig:
    config = check_config(catalog.find(f"{name}-uncased").bert_config()).config
    assert config is not None
    return config


# --------------------------------------------------------------------------------------------
# Published figures


def published() -> None:
    budget = memory.usable(12 * memory.GiB)
    print(
        f"Budget: 12 GiB less {memory.CONTEXT_BYTES // MiB} MiB CUDA context = "
        f"{budget / memory.GiB:.2f} GiB; fp32, Google's optimizer, eager attention unless said.\n"
    )
    header = "| model | | " + " | ".join(str(s) for s in memory.SEQ_LENGTHS) + " |"
    print(header)
    print("|---|---|" + "---:|" * len(memory.SEQ_LENGTHS))
    for name in ("base", "large"):
        config = config_of(name)
        google = memory.google_2018(config)
        assert google is not None
        rows = {
            "Google 2018 (TF 1.11)": [google[s] for s in memory.SEQ_LENGTHS],
            "predicted, eager": [
                memory.max_batch(config, s, "fp32", budget, attention="eager")
                for s in memory.SEQ_LENGTHS
            ],
            "predicted, SDPA (bertctl)": [
                memory.max_batch(config, s, "fp32", budget) for s in memory.SEQ_LENGTHS
            ],
        }
        for label, values in rows.items():
            print(f"| BERT-{name.title()} | {label} | " + " | ".join(map(str, values)) + " |")
        eager = rows["predicted, eager"]
        ratios = [
            f"{p / g:.1f}x" if g else "-" for p, g in zip(eager, google.values(), strict=True)
        ]
        print(f"| BERT-{name.title()} | eager / Google | " + " | ".join(ratios) + " |")
        share = [
            f"{memory.estimate(config, g, s, 'fp32', attention='eager').total / budget:.0%}"
            if g
            else "-"
            for s, g in google.items()
        ]
        print(
            f"| BERT-{name.title()} | estimate at Google's batch / budget | "
            + " | ".join(share)
            + " |"
        )
    large = config_of("large")
    print("\nbert-large, fp32, batch 4, seq 512 (measured elsewhere on a V100 16 GB: 14,949 MB):\n")
    print("| assumptions | estimate | + context | vs 14,949 MiB |")
    print("|---|---:|---:|---:|")
    cases = [
        ("PyTorch 1.x era: eager, zero_grad() keeps gradients, 1 GiB context", "eager", True, 1024),
        ("eager, gradients freed between steps, 512 MiB context", "eager", False, 512),
        ("bertctl today: SDPA, gradients freed, 512 MiB context", "sdpa", False, 512),
    ]
    for label, attention, keep, context in cases:
        est = memory.estimate(
            large, 4, 512, "fp32", optimizer="adamw", attention=attention, keep_grads=keep
        )
        with_context = est.total / MiB + context
        print(
            f"| {label} | {est.total / MiB:,.0f} MiB | {with_context:,.0f} MiB | "
            f"{with_context / 14949 - 1:+.1%} |"
        )


# --------------------------------------------------------------------------------------------
# The measured grid


def measure(
    name: str, seq: int, batch: int, precision: str, ckpt: bool, where: str = "cuda:0"
) -> dict:
    """Two training steps as bertctl finetune takes them; peak memory of the second."""
    import torch
    import transformers
    from transformers import BertConfig as HFConfig
    from transformers import BertForSequenceClassification

    from bertctl.train.optim import make_optimizer

    transformers.logging.set_verbosity_error()
    device = torch.device(where)
    config = config_of(name)
    hf = HFConfig(**config.to_dict())
    torch.manual_seed(0)
    model = BertForSequenceClassification._from_config(hf, attn_implementation="sdpa")
    if ckpt:
        model.gradient_checkpointing_enable()
    model.to(device).train()
    optimizer = make_optimizer(model, "google", 2e-5, 0.01, device)
    autocast = None if precision == "fp32" else torch.bfloat16
    ids = torch.randint(1000, config.vocab_size, (batch, seq), device=device)
    mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    mask[0, -8:] = 0  # padded batches, as bertctl's dynamic padding makes them
    labels = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.monotonic()
    step()
    torch.cuda.synchronize()
    seconds = time.monotonic() - start
    measured = torch.cuda.max_memory_allocated()
    reserved = torch.cuda.max_memory_reserved()
    est = memory.estimate(config, batch, seq, precision, "google", ckpt, "sdpa")
    return {
        "model": f"BERT-{name.title()}",
        "seq": seq,
        "batch": batch,
        "precision": precision,
        "checkpointing": ckpt,
        "predicted_allocated": est.allocated,
        "predicted_total": est.total,
        "predicted_phase": est.phase,
        "measured_allocated": measured,
        "measured_reserved": reserved,
        "ratio": measured / est.allocated,
        "step_seconds": round(seconds, 3),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def grid(args) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        print(
            "CUDA is not available here: the measured grid needs a GPU. "
            "Run `python bench/bench_memory.py --published` for the arithmetic part."
        )
        return []
    rows = []
    for name in args.models:
        for seq in args.seqs:
            for precision in ("fp32", "bf16"):
                for ckpt in (False, True):
                    batch = args.batch or BATCH[(name, seq)]
                    cmd = [sys.executable, __file__, "--one", name, str(seq), str(batch), precision]
                    cmd += ["--ckpt"] if ckpt else []
                    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    if proc.returncode != 0:
                        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                        print(f"{name} {seq} {precision} ckpt={ckpt}: failed: {tail[0]}")
                        continue
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"\n{rows[0]['device']}, torch {rows[0]['torch']}, transformers {rows[0]['transformers']}\n"
        if rows
        else ""
    )
    print(
        "| model | seq | batch | precision | checkpointing | predicted (allocated) | "
        "measured max_memory_allocated | ratio | max_memory_reserved | peak phase |"
    )
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['seq']} | {r['batch']} | {r['precision']} | "
            f"{'yes' if r['checkpointing'] else 'no'} | {r['predicted_allocated'] / MiB:,.0f} MiB | "
            f"{r['measured_allocated'] / MiB:,.0f} MiB | {r['ratio']:.2f} | "
            f"{r['measured_reserved'] / MiB:,.0f} MiB | {r['predicted_phase']} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--published", action="store_true", help="arithmetic only, no GPU")
    parser.add_argument("--models", nargs="+", default=["base", "large"], choices=["base", "large"])
    parser.add_argument("--seqs", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batch", type=int, help="micro-batch for every setting")
    parser.add_argument("--json", type=Path, help="write the grid's rows here")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "SEQ", "BATCH", "PRECISION"))
    parser.add_argument("--ckpt", action="store_true")
    args = parser.parse_args()
    if args.one:
        name, seq, batch, precision = args.one
        print(json.dumps(measure(name, int(seq), int(batch), precision, args.ckpt)))
        return
    if args.published:
        published()
        return
    rows = grid(args)
    if args.json and rows:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
