"""examples/: the fine-tuning presets load as written, the MRPC sample reads as MRPC, regenerates
byte for byte, and is learnable but not trivial for a word-overlap baseline."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from bertctl.glue import get_task, read_split
from bertctl.train.config import FIELDS, FinetuneConfig, resolve

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "mrpc-sample"
PRESETS = sorted(EXAMPLES.glob("*.yaml"))
SIZES = {"train": 1000, "dev": 200, "test": 200}
BOM = b"\xef\xbb\xbf"
HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"


def load_generator():
    """examples/make_mrpc_sample.py as a module (it is a script, not part of the package)."""
    name = "make_mrpc_sample"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "make_mrpc_sample.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def rows(split: str) -> list[list[str]]:
    """The split's data rows, split on tabs by hand (quoting disabled), header left out."""
    lines = (SAMPLE / f"{split}.tsv").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    return [line.split("\t") for line in lines[1:-1]]


# --------------------------------------------------------------------------------------------
# Presets


def test_the_presets_are_the_three_documented_ones():
    assert [p.name for p in PRESETS] == [
        "finetune-mrpc.yaml",
        "finetune-small-model.yaml",
        "finetune-sst2-quick.yaml",
    ]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_loads_and_yields_the_values_written_in_it(path):
    cfg, explicit = resolve(path, {})
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert written, "the preset sets something"
    kinds = {f.name: str(f.type) for f in dataclasses.fields(FinetuneConfig)}
    for key, value in written.items():
        name = key.replace("-", "_")
        assert name in FIELDS
        assert name in explicit
        expected = float(value) if kinds[name].startswith("float") else value
        assert getattr(cfg, name) == expected, key


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_first_line_is_the_command_that_uses_it(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert re.fullmatch(rf"# bertctl finetune [a-z0-9-]+ --config examples/{path.name}", first)


def test_mrpc_preset_is_googles_recipe():
    path = EXAMPLES / "finetune-mrpc.yaml"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# bertctl finetune mrpc --config examples/finetune-mrpc.yaml"
    cfg, _ = resolve(path, {})
    assert (cfg.task, cfg.lr, cfg.epochs, cfg.batch_size, cfg.max_seq_length) == (
        "mrpc",
        2e-5,
        3.0,
        32,
        128,
    )
    assert (cfg.warmup, cfg.weight_decay, cfg.optimizer, cfg.max_grad_norm) == (
        0.1,
        0.01,
        "google",
        1.0,
    )


def test_small_model_preset_matches_bertctls_compact_defaults():
    from bertctl.train.config import small_model_defaults

    cfg, explicit = resolve(EXAMPLES / "finetune-small-model.yaml", {})
    assert (cfg.lr, cfg.epochs) == (3e-5, 4.0)
    assert {"lr": cfg.lr, "epochs": cfg.epochs} == small_model_defaults(512, 4)
    assert "task" not in explicit, "the task comes from the command line"


def test_sst2_quick_preset_is_a_short_run():
    cfg, _ = resolve(EXAMPLES / "finetune-sst2-quick.yaml", {})
    assert (cfg.task, cfg.max_steps) == ("sst-2", 200)


def test_flags_win_over_a_preset():
    cfg, _ = resolve(EXAMPLES / "finetune-mrpc.yaml", {"lr": 5e-5, "epochs": None})
    assert (cfg.lr, cfg.epochs) == (5e-5, 3.0)


# --------------------------------------------------------------------------------------------
# The MRPC sample


@pytest.mark.parametrize("split", SIZES)
def test_sample_reads_as_mrpc(split):
    examples = read_split(get_task("mrpc"), SAMPLE, split).examples
    assert len(examples) == SIZES[split]
    assert all(ex.text_a and ex.text_b for ex in examples)
    if split == "test":
        assert all(ex.label is None for ex in examples)
        assert [ex.index for ex in examples] == [str(i) for i in range(SIZES[split])]
    else:
        assert {ex.label for ex in examples} == {"0", "1"}


@pytest.mark.parametrize("split", SIZES)
def test_sample_layout_is_exact(split):
    raw = (SAMPLE / f"{split}.tsv").read_bytes()
    assert b"\r" not in raw
    if split == "test":
        assert not raw.startswith(BOM)
        assert raw.decode("utf-8").split("\n")[0] == TEST_HEADER
    else:
        assert raw.startswith(BOM)
        assert raw[len(BOM) :].decode("utf-8").split("\n")[0] == HEADER
    ids = []
    for number, cells in enumerate(rows(split)):
        assert len(cells) == 5
        first, id1, id2, text_a, text_b = cells
        assert first == str(number) if split == "test" else first in ("0", "1")
        assert id1.isdigit() and id2.isdigit() and id1 != id2
        ids += [id1, id2]
        for text in (text_a, text_b):
            assert text == text.strip() and "  " not in text
            assert 15 <= len(text.split()) <= 30
        assert text_a != text_b
    assert len(set(ids)) == len(ids)


def test_sample_balance_and_lengths_are_mrpcs():
    for split in ("train", "dev"):
        labels = [cells[0] for cells in rows(split)]
        assert 0.6 <= labels.count("1") / len(labels) <= 0.75  # MRPC: 67.4% / 68.4%
    words = [len(text.split()) for split in SIZES for cells in rows(split) for text in cells[3:]]
    assert 18 <= sum(words) / len(words) <= 25


def test_no_pair_is_repeated_across_splits():
    pairs = [tuple(cells[3:]) for split in SIZES for cells in rows(split)]
    unordered = {frozenset(pair) for pair in pairs}
    assert len(unordered) == len(pairs)


def test_regenerating_reproduces_the_committed_files(tmp_path):
    paths = load_generator().write(tmp_path)
    assert sorted(paths) == sorted(SIZES)
    for split in SIZES:
        assert (tmp_path / f"{split}.tsv").read_bytes() == (SAMPLE / f"{split}.tsv").read_bytes()


def test_another_seed_gives_other_data():
    generator = load_generator()
    assert generator.build(seed=1)["dev"] != generator.build()["dev"]


# --------------------------------------------------------------------------------------------
# Learnable, not trivial


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two sentences' lower-cased word sets."""
    words_a, words_b = (set(re.findall(r"[a-z0-9]+", text.lower())) for text in (a, b))
    return len(words_a & words_b) / len(words_a | words_b)


def scored(split: str) -> list[tuple[float, bool]]:
    return [(overlap(ex.text_a, ex.text_b), ex.label == "1") for ex in read_split("mrpc", SAMPLE, split).examples]  # fmt: skip


def accuracy(data: list[tuple[float, bool]], threshold: float) -> float:
    return sum((score >= threshold) == label for score, label in data) / len(data)


def tuned_threshold(train: list[tuple[float, bool]]) -> float:
    return max(sorted({score for score, _ in train}), key=lambda t: accuracy(train, t))


def test_word_overlap_baseline_is_learnable_but_not_trivial():
    """A threshold on word overlap, tuned on train, beats chance on dev but stays well short of
    what reading the sentences gets (all-MiniLM-L6-v2, fine-tuned by `bertctl demo`: ~99%)."""
    train, dev = scored("train"), scored("dev")
    dev_accuracy = accuracy(dev, tuned_threshold(train))
    majority = max(sum(label for _, label in dev), sum(not label for _, label in dev)) / len(dev)
    assert 0.65 <= dev_accuracy <= 0.85, dev_accuracy
    assert dev_accuracy >= majority + 0.05
    # paraphrases overlap more on average, but the classes are far from separated
    positives = [score for score, label in train if label]
    negatives = [score for score, label in train if not label]
    gap = sum(positives) / len(positives) - sum(negatives) / len(negatives)
    assert 0.1 < gap < 0.35, gap


def test_negatives_are_a_mix_of_clearly_different_and_same_wording():
    """Some negatives are other stories (little overlap, which overlap alone catches); about as
    many share the wording of a paraphrase, so that only the names and numbers tell them apart."""
    train = scored("train")
    threshold = tuned_threshold(train)
    negatives = [score for score, label in train if not label]
    low = sum(score < 0.2 for score in negatives) / len(negatives)
    as_high_as_a_paraphrase = sum(score >= threshold for score in negatives) / len(negatives)
    assert 0.3 <= low <= 0.6, low
    assert 0.35 <= as_high_as_a_paraphrase <= 0.65, as_high_as_a_paraphrase
