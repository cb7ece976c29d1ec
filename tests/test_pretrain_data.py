"""`bertctl pretrain prepare`: Google's pretraining-data recipe, checked against its definitions.

Two real corpora, both read where they lie (nothing is copied into the repository):

* `../shared/data/sample_text.txt` (the `shared_data` fixture): Google's own sample, 3 documents.
* The Python documentation that ships with CPython itself (`pydoc_data.topics`, the text behind
  `help("if")`): 79 topics, each one document, its paragraphs split into sentences (about 4,300
  sentences and 124k WordPiece tokens). `stdlib_docs_corpus` writes it in Google's input format.

Every instance is rebuilt (masked ids put back) and must be made of real, contiguous token spans
of the corpus; the statistics must match Google's definitions within stated binomial tolerances.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from clirun import bertctl, one_error_line

from bertctl.errors import BertctlError, UsageError
from bertctl.pretraining_data import (
    ARRAYS,
    PrepareConfig,
    Vocabulary,
    _document_instances,
    _Instances,
    _truncate_pair,
    iter_raw_shards,
    mask_tokens,
    open_shards,
    prepare,
    vocab_sha256,
)
from bertctl.tokenization import Tokenizer, bundled_vocab

# A statistic is accepted within this many binomial standard deviations of Google's value
# (two-sided, about 6 in 100,000 for one check by chance; every run is seeded, so deterministic).
SIGMAS = 4.0


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(bundled_vocab(), do_lower_case=True)


@pytest.fixture(scope="module")
def sample_text(shared_data: Path) -> Path:
    path = shared_data / "sample_text.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


_RULE = re.compile(r"^[\s*=~\-^]+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def stdlib_docs_corpus(path: Path) -> Path:
    """CPython's own documentation topics, one document each, one sentence per line."""
    from pydoc_data.topics import topics

    documents = []
    for key in sorted(topics):
        sentences: list[str] = []
        for paragraph in re.split(r"\n\s*\n", topics[key]):
            lines = [ln for ln in paragraph.splitlines() if ln.strip() and not _RULE.match(ln)]
            if lines:
                text = " ".join(" ".join(lines).split())
                sentences.extend(s for s in _SENTENCE_END.split(text) if s)
        documents.append("\n".join(sentences))
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def docs_corpus(tmp_path_factory) -> Path:
    return stdlib_docs_corpus(tmp_path_factory.mktemp("corpus") / "stdlib_docs.txt")


def read_documents(path: Path, tokenizer: Tokenizer) -> list[np.ndarray]:
    """The corpus's documents as token-id arrays (sentences joined), read independently."""
    documents: list[list[int]] = [[]]
    for line in path.read_text(encoding="utf-8", errors="ignore").splitlines():
        line = line.strip()
        if not line:
            documents.append([])
        else:
            documents[-1].extend(tokenizer.tokenize_with_ids(line)[1])
    return [np.asarray(d, dtype=np.int32) for d in documents if d]


class Corpus:
    """All documents in one int32 byte string (separated by -1) for fast span searches."""

    def __init__(self, documents: list[np.ndarray]) -> None:
        parts, starts, pos = [], [], 0
        for doc in documents:
            starts.append(pos)
            parts += [doc, np.asarray([-1], dtype=np.int32)]
            pos += len(doc) + 1
        self.hay = np.concatenate(parts).tobytes()
        self.starts = np.asarray(starts)

    def spans(self, ids: np.ndarray, start: int = 0):
        """(document, token offset) of each occurrence of `ids`, from token `start` on."""
        needle = np.ascontiguousarray(ids, dtype=np.int32).tobytes()
        at = self.hay.find(needle, start * 4)
        while at != -1:
            if at % 4 == 0:
                token = at // 4
                yield int(np.searchsorted(self.starts, token, side="right")) - 1, token
            at = self.hay.find(needle, at + 1)


def binomial_ok(successes: int, trials: int, p: float) -> bool:
    sigma = math.sqrt(trials * p * (1 - p))
    return abs(successes - trials * p) <= SIGMAS * sigma + 1e-9


def check_instances(folder: Path, corpus: Corpus, vocab) -> dict[str, int]:
    """Every structural rule of Google's instances, and the measured masking outcomes."""
    ds = open_shards(folder)
    cfg = ds.settings
    cls, sep, mask = vocab.id_of("[CLS]"), vocab.id_of("[SEP]"), vocab.id_of("[MASK]")
    measured = dict.fromkeys(
        ("mask", "unchanged", "random", "is_next", "masked", "random_elsewhere"), 0
    )
    lengths_all = []
    a_docs: list[int] = []  # the document of each row's A, where only one document holds it
    for arrays in ds.shards:
        for row in range(len(arrays["lengths"])):
            ids = np.asarray(arrays["input_ids"][row])
            seg = np.asarray(arrays["segment_ids"][row])
            length = int(arrays["lengths"][row])
            count = int(arrays["masked_lm_counts"][row])
            positions = np.asarray(arrays["masked_lm_positions"][row])
            labels = np.asarray(arrays["masked_lm_ids"][row])
            nsp = int(arrays["next_sentence_labels"][row])
            assert 5 <= length <= cfg.max_seq_length
            lengths_all.append(length)
            len_a = int((seg[:length] == 0).sum()) - 2
            assert len_a >= 1 and length - len_a - 3 >= 1
            assert seg[: len_a + 2].tolist() == [0] * (len_a + 2)
            assert seg[len_a + 2 : length].tolist() == [1] * (length - len_a - 2)
            assert not seg[length:].any() and not ids[length:].any()
            assert ids[0] == cls and ids[len_a + 1] == sep and ids[length - 1] == sep
            # masked positions: sorted, unique, never a special, padding after the count
            pos = positions[:count]
            assert 1 <= count <= cfg.max_predictions
            assert (np.diff(pos) > 0).all()
            assert not set(pos.tolist()) & {0, len_a + 1, length - 1}
            assert pos.max() < length
            assert not positions[count:].any() and not labels[count:].any()
            # rebuild the original sequence: specials only where the builder put them
            original = ids[:length].copy()
            original[pos] = labels[:count]
            specials = np.flatnonzero((original == cls) | (original == sep)).tolist()
            assert specials == [0, len_a + 1, length - 1]
            # A and B are real, contiguous spans of the corpus; IsNext: B follows A in the doc
            a, b = original[1 : len_a + 1], original[len_a + 2 : length - 1]
            found_a = list(corpus.spans(a))
            assert found_a, "segment A is not a span of the corpus"
            a_docs.append(found_a[0][0] if len({d for d, _ in found_a}) == 1 else -1)
            if nsp == 0:
                assert any(
                    doc_b == doc_a
                    for doc_a, off in found_a
                    for doc_b, _ in corpus.spans(b, off + len(a))
                ), "IsNext: B does not follow A in the same document"
                measured["is_next"] += 1
            else:
                found_b = {doc for doc, _ in corpus.spans(b)}
                assert found_b, "B is not a span of the corpus"
                docs_a = {doc for doc, _ in found_a}
                if len(docs_a) == 1 and len(found_b) == 1:
                    # a random next comes from another document (10 tries make a repeat of the
                    # same one vanishingly rare, even among 3 documents: 3^-10)
                    assert docs_a != found_b, "random next taken from A's own document"
                    measured["random_elsewhere"] += 1
            # what happened to each chosen token
            now, before = ids[pos], labels[:count]
            measured["mask"] += int((now == mask).sum())
            measured["unchanged"] += int(((now == before) & (now != mask)).sum())
            measured["random"] += int(((now != before) & (now != mask)).sum())
            measured["masked"] += count
    # the manifest's statistics pass agrees with the arrays
    totals = ds.manifest["totals"]
    assert totals["instances"] == len(ds) == len(lengths_all)
    assert totals["masked"] == measured["masked"]
    assert totals["tokens"] == sum(lengths_all)
    assert totals["instances"] - totals["random_next"] == measured["is_next"]
    histogram = np.bincount(lengths_all, minlength=cfg.max_seq_length + 1).tolist()
    assert ds.manifest["statistics"]["length_histogram"] == histogram
    # instances are shuffled at the end: neighbours rarely come from the same document
    pairs = [(x, y) for x, y in itertools.pairwise(a_docs) if x >= 0 and y >= 0]
    same = sum(x == y for x, y in pairs)
    measured["neighbours"], measured["same_document_neighbours"] = len(pairs), same
    return measured


def check_statistics(folder: Path, measured: dict[str, int], whole_word: bool = False) -> None:
    """Google's definitions: mask count per instance, 80/10/10, NSP coin, short targets."""
    ds = open_shards(folder)
    cfg, totals, stats = ds.settings, ds.manifest["totals"], ds.manifest["statistics"]
    lengths = np.concatenate([np.asarray(a["lengths"]) for a in ds.shards]).astype(np.int64)
    counts = np.concatenate([np.asarray(a["masked_lm_counts"]) for a in ds.shards])
    # Google's count: min(max_predictions, max(1, round(len(tokens) * masked_lm_prob)))
    expected = np.asarray(
        [min(cfg.max_predictions, max(1, round(n * cfg.masked_lm_prob))) for n in lengths]
    )
    if whole_word:
        assert (counts <= expected).all()  # a word that would overshoot is skipped
        assert counts.sum() >= 0.95 * expected.sum()
    else:
        assert (counts == expected).all()
    maskable = int((lengths - 3).sum())
    assert stats["mask_rate"] == pytest.approx(counts.sum() / maskable)
    assert stats["expected_mask_rate"] == pytest.approx(expected.sum() / maskable)
    # The cap (20 of 125 at length 128: round(19.2) = 19) and rounding of short instances move
    # the aggregate away from masked_lm_prob by less than one point.
    assert abs(stats["mask_rate"] - cfg.masked_lm_prob) < 0.01
    # 80 / 10 / 10, measured from the arrays (a random word equal to the original, 1 in 30,522,
    # counts as unchanged) and from the decisions the manifest counted
    assert measured["random_elsewhere"] > 0.2 * totals["random_next"]
    n = measured["masked"]
    for key, p in (("mask", 0.8), ("unchanged", 0.1), ("random", 0.1)):
        assert binomial_ok(measured[key], n, p), (key, measured[key], n)
    decided = (totals["masked_as_mask"], totals["masked_unchanged"], totals["masked_random"])
    assert sum(decided) == n
    assert binomial_ok(decided[0], n, 0.8) and binomial_ok(decided[2], n, 0.1)
    # NSP: a fair coin for chunks of two or more sentences, a random next for one-sentence ones
    flips = totals["coin_flips"]
    assert binomial_ok(flips - totals["coin_random_next"], flips, 0.5)
    single = totals["instances"] - flips
    assert totals["random_next"] == totals["coin_random_next"] + single
    # short targets: one draw per document and pass, probability short_seq_prob
    passes = totals["document_passes"]
    assert passes == totals["documents"] * cfg.dupe_factor
    assert binomial_ok(totals["short_targets"], passes, cfg.short_seq_prob)


# --------------------------------------------------------------------------------------------
# Statistics on real corpora
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_prepared(sample_text, tokenizer, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "data"
    prepare([sample_text], out, tokenizer, PrepareConfig(dupe_factor=5), workers=1)
    return out


def test_sample_text_matches_googles_definitions(sample_prepared, sample_text, tokenizer):
    corpus = Corpus(read_documents(sample_text, tokenizer))
    measured = check_instances(sample_prepared, corpus, tokenizer.vocab)
    check_statistics(sample_prepared, measured)
    manifest = json.loads((sample_prepared / "manifest.json").read_text())
    assert manifest["totals"]["documents"] == 3 and manifest["totals"]["shards"] == 1
    assert manifest["totals"]["sentences"] == 31
    assert manifest["settings"]["seed"] == 12345
    # bertctl's bundled vocab is Google's uncased vocab.txt, byte for byte
    assert manifest["tokenizer"]["vocab_sha256"] == (
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    )
    assert manifest["tokenizer"]["do_lower_case"] is True


def test_stdlib_docs_matches_googles_definitions(docs_corpus, tokenizer, tmp_path):
    out = tmp_path / "data"
    result = prepare([docs_corpus], out, tokenizer, PrepareConfig(dupe_factor=5), workers=1)
    counts = result.statistics.counts
    assert counts["documents"] == 79 and counts["instances"] > 5000
    corpus = Corpus(read_documents(docs_corpus, tokenizer))
    measured = check_instances(out, corpus, tokenizer.vocab)
    check_statistics(out, measured)
    assert measured["same_document_neighbours"] < 0.1 * measured["neighbours"]
    # long documents fill the sequence; truncation happens
    assert result.statistics.fill > 0.8
    assert 0 < counts["truncated_instances"] < counts["instances"]


def test_short_sequences_and_no_short_sequences(docs_corpus, tokenizer, tmp_path):
    never = prepare(
        [docs_corpus],
        tmp_path / "never",
        tokenizer,
        PrepareConfig(dupe_factor=1, short_seq_prob=0.0),
        workers=1,
    )
    always = prepare(
        [docs_corpus],
        tmp_path / "always",
        tokenizer,
        PrepareConfig(dupe_factor=1, short_seq_prob=1.0),
        workers=1,
    )
    assert never.statistics.counts["short_targets"] == 0
    assert always.statistics.short_target_share == 1.0
    # random targets in [2, 125] average about 64 tokens: many more, shorter instances
    assert always.statistics.mean_length < 0.75 * never.statistics.mean_length
    assert always.statistics.counts["instances"] > 1.5 * never.statistics.counts["instances"]


# --------------------------------------------------------------------------------------------
# Whole-word masking
# --------------------------------------------------------------------------------------------


def word_groups(ids: np.ndarray, length: int, vocab) -> list[list[int]]:
    """Google's WWM candidates: a `##` piece joins the previous non-special token's group."""
    specials = {vocab.id_of("[CLS]"), vocab.id_of("[SEP]")}
    groups: list[list[int]] = []
    for index in range(length):
        token = int(ids[index])
        if token in specials:
            continue
        if groups and vocab.tokens[token].startswith("##"):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@pytest.mark.parametrize("which", ["sample", "docs"])
def test_whole_word_mask_masks_whole_words_only(which, request, tokenizer, tmp_path):
    path = (
        request.getfixturevalue("sample_text")
        if which == "sample"
        else request.getfixturevalue("docs_corpus")
    )
    out = tmp_path / "wwm"
    dupe = 5 if which == "sample" else 2
    cfg = PrepareConfig(dupe_factor=dupe, whole_word_mask=True)
    prepare([path], out, tokenizer, cfg, workers=1)
    vocab = tokenizer.vocab
    masked_pieces = 0
    ds = open_shards(out)
    for arrays in ds.shards:
        for row in range(len(arrays["lengths"])):
            length, count = int(arrays["lengths"][row]), int(arrays["masked_lm_counts"][row])
            pos = np.asarray(arrays["masked_lm_positions"][row][:count])
            original = np.asarray(arrays["input_ids"][row][:length]).copy()
            original[pos] = arrays["masked_lm_ids"][row][:count]
            chosen = set(pos.tolist())
            for group in word_groups(original, length, vocab):
                hit = [i in chosen for i in group]
                assert all(hit) or not any(hit), "a word was masked in part"
                if len(group) > 1 and all(hit):
                    masked_pieces += len(group) - 1
    assert masked_pieces > 10  # multi-piece words were masked, whole
    measured = check_instances(out, Corpus(read_documents(path, tokenizer)), vocab)
    check_statistics(out, measured, whole_word=True)


# --------------------------------------------------------------------------------------------
# Determinism and sharding
# --------------------------------------------------------------------------------------------


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix == ".npy"
    }


def test_same_seed_same_bytes_for_any_worker_count(docs_corpus, tokenizer, tmp_path):
    cfg = PrepareConfig(dupe_factor=2, shard_documents=20)
    one = prepare([docs_corpus], tmp_path / "w1", tokenizer, cfg, workers=1)
    two = prepare([docs_corpus], tmp_path / "w2", tokenizer, cfg, workers=2)
    assert one.workers == 1 and two.workers == 2
    assert one.manifest["totals"]["shards"] == 4  # 79 documents: 20 + 20 + 20 + 19
    a, b = shard_bytes(tmp_path / "w1"), shard_bytes(tmp_path / "w2")
    assert len(a) == 4 * len(ARRAYS) and a == b
    assert (tmp_path / "w1" / "manifest.json").read_bytes() == (
        tmp_path / "w2" / "manifest.json"
    ).read_bytes()
    other = PrepareConfig(dupe_factor=2, shard_documents=20, seed=12346)
    prepare([docs_corpus], tmp_path / "s2", tokenizer, other, workers=1)
    c = shard_bytes(tmp_path / "s2")
    assert c.keys() == a.keys() and all(c[k] != a[k] for k in a if "input_ids" in k)
    # shards are read back in order, as one dataset
    ds = open_shards(tmp_path / "w2")
    assert len(ds) == one.manifest["totals"]["instances"]
    assert ds.offsets.tolist()[-1] == len(ds)


def test_shard_boundaries_depend_on_the_corpus_only():
    from bertctl.pretraining_data import _ReadState

    def sizes(n_docs: int, per_shard: int) -> list[int]:
        docs = iter([[f"sentence {i}"] for i in range(n_docs)])
        return [len(s) for s, _ in iter_raw_shards(docs, per_shard, _ReadState())]

    assert sizes(3, 10) == [3]
    assert sizes(20, 10) == [10, 10]
    assert sizes(24, 10) == [10, 14]  # a tail under half a shard joins the shard before it
    assert sizes(25, 10) == [10, 10, 5]
    assert sizes(26, 10) == [10, 10, 6]
    assert sizes(0, 10) == []
    assert sizes(2, 1) == [1, 1]


def test_documents_are_split_by_blank_lines_and_files(tokenizer, tmp_path):
    first = tmp_path / "a.txt"
    first.write_bytes(b"One sentence here.\nAnother one.\n\n\n  \nSecond doc \xff starts.\n")
    second = tmp_path / "b.txt"
    second.write_text("Third document.\n\x00\x01\n\nFourth document, last.", encoding="utf-8")
    result = prepare(
        [str(tmp_path / "*.txt")], tmp_path / "out", tokenizer, PrepareConfig(dupe_factor=1)
    )
    counts = result.statistics.counts
    # a line of control characters only tokenizes to nothing and is skipped, as Google does
    assert counts["documents"] == 4 and counts["sentences"] == 5
    assert any("not UTF-8" in w and "a.txt:6" in w for w in result.warnings)


# --------------------------------------------------------------------------------------------
# Instance creation, masking and the reader, directly
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("short_seq_prob", [0.0, 1.0])
def test_chunks_cover_each_document_once_and_put_back_unused_sentences(tokenizer, short_seq_prob):
    """With one-token sentences no pair is ever truncated, so within one pass the A segments
    and true-next B segments of a document's instances are its sentences, each exactly once and
    in order (sentences left unused by a random next are put back for the next chunk), and a
    random B is a run of sentences of another document that just reaches the target."""
    vocab = Vocabulary(tokenizer.vocab)
    rng = random.Random(7)
    next_id = 2000
    documents = []
    for _ in range(12):
        size = rng.randint(1, 40)
        documents.append([[next_id + k] for k in range(size)])
        next_id += size
    where = {s[0]: (d, i) for d, doc in enumerate(documents) for i, s in enumerate(doc)}
    cfg = PrepareConfig(
        max_seq_length=13, max_predictions=2, short_seq_prob=short_seq_prob, masked_lm_prob=0.01
    )
    random_nexts = 0
    a_shares: list[float] = []
    for doc_index, document in enumerate(documents):
        sink = _Instances()
        _document_instances(documents, doc_index, cfg, vocab, rng, sink)
        covered: list[int] = []
        for masked, len_a, positions, labels, is_random in sink.rows:
            original = list(masked)
            for p, label in zip(positions, labels, strict=True):
                original[p] = label
            a, b = original[1 : len_a + 1], original[len_a + 2 : -1]
            assert len(a) + len(b) <= cfg.max_seq_length - 3
            covered += a
            if is_random:
                random_nexts += 1
                other, start = where[b[0]]
                assert [where[t] for t in b] == [(other, start + k) for k in range(len(b))]
                if short_seq_prob == 0.0:
                    # B stops as soon as it reaches the target, or at the end of its document
                    full = len(a) + len(b) == cfg.max_seq_length - 3
                    assert full or start + len(b) == len(documents[other])
            else:
                covered += b
                if len(a) + len(b) >= 3:  # A is the first randint(1, k - 1) of k sentences
                    a_shares.append((len(a) - 1) / (len(a) + len(b) - 2))
        assert covered == [s[0] for s in document]
        assert sink.counts["truncated_instances"] == 0
    assert random_nexts > 10
    assert abs(np.mean(a_shares) - 0.5) < SIGMAS * math.sqrt(1 / 12 / len(a_shares))


def test_truncation_trims_the_longer_side_at_either_end():
    rng = random.Random(1)
    fronts = backs = 0
    for _ in range(2000):
        a, b = list(range(10)), list(range(100, 106))
        removed = _truncate_pair(a, b, 12, rng)
        assert removed == 4 and len(a) == 6 and len(b) == 6  # the longer side (A) only
        fronts += a[0] != 0
        backs += a[-1] != 9
    assert binomial_ok(fronts, 2000, 1 - 0.5**4) and binomial_ok(backs, 2000, 1 - 0.5**4)
    a, b = [1, 2], [3, 4]
    _truncate_pair(a, b, 3, rng)
    assert a == [1, 2] and len(b) == 1  # a tie trims B


# --------------------------------------------------------------------------------------------
# Masking and the reader, directly
# --------------------------------------------------------------------------------------------


def test_mask_count_and_specials(tokenizer):
    vocab = Vocabulary(tokenizer.vocab)
    counts: dict[str, int] = dict.fromkeys(
        ("predictions_expected", "masked", "masked_as_mask", "masked_unchanged", "masked_random"),
        0,
    )
    rng = random.Random(0)
    for len_a, len_b in ((1, 1), (3, 4), (30, 40), (62, 63), (200, 300)):
        ids = [vocab.cls, *range(2000, 2000 + len_a), vocab.sep]
        ids += [*range(3000, 3000 + len_b), vocab.sep]
        for prob, cap in ((0.15, 20), (1.0, 1000)):
            cfg = PrepareConfig(
                max_seq_length=1024, masked_lm_prob=prob, max_predictions=min(cap, 1021)
            )
            out, positions, labels = mask_tokens(ids, len_a, cfg, vocab, rng, counts)
            n = len(ids)
            want = min(cfg.max_predictions, max(1, round(n * prob)), n - 3)
            assert len(positions) == want
            assert positions == sorted(set(positions))
            assert not {0, len_a + 1, n - 1} & set(positions)
            assert labels == [ids[p] for p in positions]
            unchosen = set(range(n)) - set(positions)
            assert all(out[i] == ids[i] for i in unchosen)


def test_open_shards_gives_googles_features(sample_prepared):
    ds = open_shards(sample_prepared)
    cfg = ds.settings
    first = ds[0]
    assert set(first) == {
        "input_ids",
        "input_mask",
        "segment_ids",
        "masked_lm_positions",
        "masked_lm_ids",
        "masked_lm_weights",
        "next_sentence_labels",
    }
    assert first["input_ids"].shape == (cfg.max_seq_length,)
    assert first["masked_lm_positions"].shape == (cfg.max_predictions,)
    length = int(first["input_mask"].sum())
    assert first["input_mask"][:length].all() and not first["input_mask"][length:].any()
    assert first["input_ids"][length - 1] == ds.manifest["tokenizer"]["sep_id"]
    assert first["masked_lm_weights"].dtype == np.float32
    assert first["masked_lm_weights"].sum() == (first["masked_lm_positions"] > 0).sum()
    batch = ds.batch([0, len(ds) - 1, 0])
    assert batch["input_ids"].shape == (3, cfg.max_seq_length)
    assert (batch["input_ids"][0] == batch["input_ids"][2]).all()
    assert (ds[-1]["input_ids"] == batch["input_ids"][1]).all()
    assert ds.batch([])["masked_lm_weights"].shape == (0, cfg.max_predictions)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert isinstance(ds.shards[0]["input_ids"], np.memmap)
    assert ds.vocab_sha256 == vocab_sha256(bundled_vocab())
    with pytest.raises(BertctlError, match=r"manifest\.json"):
        open_shards(sample_prepared / "shard-00000")


def test_settings_and_output_errors(sample_text, tokenizer, tmp_path):
    with pytest.raises(UsageError, match="--masked-lm-prob"):
        PrepareConfig(masked_lm_prob=0)
    with pytest.raises(UsageError, match="--max-seq-length"):
        PrepareConfig(max_seq_length=4)
    with pytest.raises(UsageError, match="--max-predictions"):
        PrepareConfig(max_predictions=0)
    with pytest.raises(BertctlError, match="no such file"):
        prepare([tmp_path / "missing.txt"], tmp_path / "o", tokenizer)
    with pytest.raises(BertctlError, match="matches no file"):
        prepare([str(tmp_path / "*.nothing")], tmp_path / "o", tokenizer)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    with pytest.raises(BertctlError, match="--overwrite"):
        prepare([sample_text], tmp_path / "o", tokenizer, PrepareConfig(dupe_factor=1))
    # --overwrite replaces only shards bertctl prepared: the user's file stays.
    with pytest.raises(BertctlError, match=r"not made by bertctl \(no manifest.json\)"):
        prepare(
            [sample_text], tmp_path / "o", tokenizer, PrepareConfig(dupe_factor=1), overwrite=True
        )
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["keep.txt"]
    made = tmp_path / "made"
    prepare([sample_text], made, tokenizer, PrepareConfig(dupe_factor=1))
    first = (made / "manifest.json").read_text()
    prepare([sample_text], made, tokenizer, PrepareConfig(dupe_factor=2), overwrite=True)
    assert (made / "manifest.json").read_text() != first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def test_cli_prepare_json(sample_text, tmp_path):
    out = tmp_path / "data"
    r = bertctl(
        "pretrain", "prepare", str(sample_text), "--out", str(out), "--dupe-factor", "2", "--json"
    )
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["out"] == str(out)
    assert report["settings"]["dupe_factor"] == 2
    assert report["settings"]["max_seq_length"] == 128
    assert report["totals"]["documents"] == 3
    assert 0.1 < report["statistics"]["mask_rate"] < 0.2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"] == report["totals"]
    ds = open_shards(out)
    assert len(ds) == report["totals"]["instances"] > 0
    r = bertctl("pretrain", "prepare", str(sample_text), "--out", str(tmp_path / "h"))
    assert r.code == 0, r.stderr
    assert "mask rate" in r.stdout and "IsNext" in r.stdout
    assert "wrote" in r.stderr


def test_cli_errors(tmp_path):
    r = bertctl("pretrain", "prepare", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"))
    assert r.code == 1
    assert "missing.txt: no such file" in one_error_line(r)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n\n")
    r = bertctl("pretrain", "prepare", str(empty), "--out", str(tmp_path / "o"))
    assert r.code == 1
    assert "holds no text" in one_error_line(r)
    assert list(tmp_path.iterdir()) == [empty]  # nothing half-written is left behind
    r = bertctl(
        "pretrain", "prepare", str(empty), "--out", str(tmp_path / "o"), "--masked-lm-prob", "2"
    )
    assert r.code == 2
    assert "--masked-lm-prob 2.0" in one_error_line(r)
    r = bertctl("pretrain", "prepare", str(empty), "--out", str(tmp_path), "--dupe-factor", "0")
    assert r.code == 2
    r = bertctl(
        "pretrain", "prepare", str(empty), "--out", str(tmp_path / "w"), "--workers", "9999"
    )
    assert r.code == 2 and "--workers 9999" in one_error_line(r)
    assert not (tmp_path / "w").exists()
    r = bertctl("pretrain", "prepare", str(empty), "--out", str(tmp_path))
    assert r.code == 1
    assert "holds the input" in one_error_line(r) and "empty.txt" in one_error_line(r)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = bertctl("pretrain", "prepare", str(empty), "--out", str(tmp_path / "full"))
    assert r.code == 1
    assert "pass --overwrite" in one_error_line(r)


def test_cli_help_lists_pretrain():
    r = bertctl("--help")
    assert "pretrain prepare" in r.stdout
    r = bertctl("pretrain", "--help")
    assert r.code == 0 and "prepare" in r.stdout
