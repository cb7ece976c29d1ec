"""Every parser a user can feed, fuzzed: a clean BertctlError or a correct result, never a crash,
a hang or a giant allocation.

One section per parser: GLUE TSVs (and custom tasks), bert_config.json, vocab.txt (with the
tokenizer checked against the reference on whatever vocab survives), the TF checkpoint index and
its entries, zip archives, model.safetensors headers, the fine-tuning YAML, and the command line
itself. Each has a fast sample in the
default run and a 10,000-example campaign under `-m slow` (see fuzzing.py and RELIABILITY.md).
The tokenizer on arbitrary Unicode is fuzzed in test_tokenization.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from clirun import in_process
from fuzzing import FAST, FAST_CLI, SLOW, bounded
from hypothesis import assume, given
from hypothesis import strategies as st
from reference_tokenization import ReferenceTokenizer
from test_tfcheckpoint import build_table, entry_proto, header_proto

from bertctl import archive, glue, inspection
from bertctl.bertconfig import INT_KEYS, count_parameters, parse_config_bytes
from bertctl.errors import BertctlError, CheckpointError, ConfigError, VocabError
from bertctl.tfcheckpoint import DTYPES, Checkpoint, masked_crc32c
from bertctl.tokenization import Tokenizer, parse_vocab
from bertctl.train import config as ft_config
from bertctl.verify import verify_zip

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE = FIXTURES / "glue"
TINY = FIXTURES / "tf" / "tiny_release"


def fresh(folder: Path) -> Path:
    """An empty folder for one example (hypothesis reuses the test's tmp_path)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@st.composite
def mutated(draw, seed: bytes, max_edits: int = 6) -> bytes:
    """`seed` with a few bytes overwritten, inserted or deleted, and maybe cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_edits))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["set", "insert", "delete"]))
        if kind == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


# ============================================================================================
# GLUE TSVs
# ============================================================================================

GLUE_CASES = [
    (name, split)
    for name in ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")
    for split in ("train", "dev", "test")
]
# Pieces real GLUE rows are made of, and the characters that break naive readers.
TSV_PIECES = st.sampled_from(
    ["\t", "\n", "\r\n", "\r", "\ufeff", '"', "'", " ", "", "0", "1", "2", "-1", "5.0", "2.5",
     "nan", "inf", "-inf", "1e999", "5.000001", "entailment", "not_entailment", "neutral",
     "contradiction", "The cat sat.", "\x85", "\u2028", "\x1c", "\x00", "é", "中文", "*", "#"]
)  # fmt: skip
TSV_TEXT = st.lists(st.one_of(TSV_PIECES, st.text(max_size=4)), max_size=60).map("".join)


def _seed_file(name: str, split: str) -> bytes:
    task = glue.get_task(name)
    return (GLUE / task.folder / task.layout(split)[1].file).read_bytes()


GLUE_FILE = st.sampled_from(GLUE_CASES).flatmap(
    lambda case: st.tuples(
        st.just(case),
        st.one_of(
            mutated(_seed_file(*case)),
            TSV_TEXT.map(lambda text: text.encode("utf-8")),
            st.binary(max_size=300),
            # the real header, then generated rows: reaches the row checks
            TSV_TEXT.map(
                lambda text, c=case: _seed_file(*c).split(b"\n")[0] + b"\n" + text.encode()
            ),
        ),
    )
)


def check_glue(tmp_path: Path, case: tuple[str, str], data: bytes, skip: bool) -> None:
    name, split = case
    task = glue.get_task(name)
    split_name, layout = task.layout(split)
    folder = fresh(tmp_path / "glue")
    path = folder / layout.file
    path.write_bytes(data)
    with bounded():
        try:
            result = glue.read_split(task, folder, split, skip_bad_rows=skip)
        except glue.GlueError as exc:
            assert exc.message.startswith(f"{path}:"), exc.message  # names the file (and line)
            assert exc.hint
            return
    lines = data.count(b"\n") + 1
    assert len(result.examples) + len(result.skipped) <= lines
    for example in result.examples:
        line = int(example.guid.rsplit("-", 1)[1])
        assert example.guid.startswith(split_name) and 1 <= line <= lines
        for text in (example.text_a, example.text_b):
            assert text is None or (text.strip() and "\t" not in text and "\n" not in text)
        if layout.label is None:
            assert example.label is None and example.index is not None
        elif task.is_regression:
            assert isinstance(example.label, float) and 0.0 <= example.label <= 5.0
        else:
            assert example.label in task.labels
    for line, what in result.skipped:
        assert 1 <= line <= lines and what


@FAST
@given(file=GLUE_FILE, skip=st.booleans())
def test_glue_tsv_fuzz(tmp_path, file, skip):
    check_glue(tmp_path, *file, skip)


@SLOW
@given(file=GLUE_FILE, skip=st.booleans())
def test_glue_tsv_fuzz_10k(tmp_path, file, skip):
    check_glue(tmp_path, *file, skip)


# Custom tasks discover their labels from the file first, then read it like GLUE's.
CUSTOM_SEED = (GLUE / "custom" / "train.tsv").read_bytes()
CUSTOM_FILE = st.one_of(mutated(CUSTOM_SEED), TSV_TEXT.map(str.encode), st.binary(max_size=200))
CUSTOM_COLUMNS = st.sampled_from(
    [("review", None, "stars", True), (1, 2, 3, True), (1, None, 3, False), (0, None, 9, False)]
)


def check_custom(tmp_path: Path, data: bytes, columns, regression: bool) -> None:
    text_a, text_b, label, header = columns
    folder = fresh(tmp_path / "custom")
    path = folder / "train.tsv"
    path.write_bytes(data)
    with bounded():
        try:
            task = glue.custom_task(
                folder, text_a=text_a, text_b=text_b, label=label, header=header,
                regression=regression,
            )  # fmt: skip
            result = glue.read_split(task, folder, "train", skip_bad_rows=True)
        except glue.GlueError as exc:
            assert exc.message.startswith(str(path)), exc.message
            return
    for example in result.examples:
        if regression:
            assert isinstance(example.label, float) and math.isfinite(example.label)
        else:
            assert example.label in task.labels


@FAST
@given(data=CUSTOM_FILE, columns=CUSTOM_COLUMNS, regression=st.booleans())
def test_custom_tsv_fuzz(tmp_path, data, columns, regression):
    check_custom(tmp_path, data, columns, regression)


@SLOW
@given(data=CUSTOM_FILE, columns=CUSTOM_COLUMNS, regression=st.booleans())
def test_custom_tsv_fuzz_10k(tmp_path, data, columns, regression):
    check_custom(tmp_path, data, columns, regression)


# ============================================================================================
# bert_config.json
# ============================================================================================

BASE_CONFIG = json.loads((TINY / "bert_config.json").read_text())
CONFIG_KEYS = [*BASE_CONFIG, "layer_norm_eps", "hidden_act", "num_labels", "vocab-size"]
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, 12, 768, 2**31, 2**63, 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["gelu", "relu", "gelu_new", "swish", ""]),
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
# Texts that no dict can produce: numbers past the int-conversion limit, nesting past the
# recursion limit, a BOM, a JSON value that is not an object.
CONFIG_TRICKS = st.sampled_from(
    [
        b'{"vocab_size": 1' + b"0" * 5000 + b"}",
        b'{"vocab_size": 99, "hidden_size": 1e400}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'\xef\xbb\xbf{"vocab_size": 99}',
        b'"just a string"',
        b"",
        b"\xff\xfe{",
        b'{"vocab_size": 99, "vocab_size": -1}',
    ]
)


def _config_json(overrides: dict, base: bool) -> bytes:
    data = {**BASE_CONFIG, **overrides} if base else overrides
    return json.dumps(data, allow_nan=True).encode()


CONFIG_FILE = st.one_of(
    st.builds(
        _config_json,
        st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUE, max_size=4),
        st.just(True),
    ),
    st.builds(
        _config_json, st.dictionaries(st.text(max_size=12), JSON_VALUE, max_size=6), st.just(False)
    ),
    CONFIG_TRICKS,
    mutated(json.dumps(BASE_CONFIG).encode()),
    st.binary(max_size=200),
)


def check_config_file(tmp_path: Path, data: bytes) -> None:
    folder = fresh(tmp_path / "config")
    path = folder / "bert_config.json"
    path.write_bytes(data)
    with bounded():
        try:
            loaded = parse_config_bytes(data, str(path))
        except ConfigError as exc:
            assert str(path) in exc.message, exc.message
            loaded = None
        try:  # what `bertctl inspect bert_config.json` does with it
            inspection.inspect_target(str(path))
        except BertctlError as exc:
            assert str(path) in exc.message, exc.message
        if loaded is None:
            return
        if loaded.config is None:
            assert loaded.errors and all(str(path) in p.message for p in loaded.errors)
            return
        config = loaded.config
        for key in INT_KEYS:
            value = getattr(config, key)
            assert type(value) is int and 0 < value < 2**31, (key, value)
        assert config.hidden_size % config.num_attention_heads == 0
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            assert 0.0 <= getattr(config, key) < 1.0
        assert math.isfinite(config.initializer_range) and config.initializer_range > 0
        assert math.isfinite(config.layer_norm_eps) and config.layer_norm_eps > 0
        assert count_parameters(config, heads=True) > count_parameters(config) > 0


@FAST
@given(data=CONFIG_FILE)
def test_bert_config_fuzz(tmp_path, data):
    check_config_file(tmp_path, data)


@SLOW
@given(data=CONFIG_FILE)
def test_bert_config_fuzz_10k(tmp_path, data):
    check_config_file(tmp_path, data)


# ============================================================================================
# vocab.txt, and the tokenizer on whatever vocab survives
# ============================================================================================

VOCAB_PIECES = st.sampled_from(
    ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "##", "#", "a", "##a", "b", "ab", "##b", "é",
     "e\u0301", " ", "\t", "\r", "\x00", "\x85", "\u2028", "中", "##中", ",", "un", "##want"]
)  # fmt: skip
VOCAB_LINE = st.one_of(
    VOCAB_PIECES, st.text(max_size=5), st.lists(VOCAB_PIECES, max_size=3).map("".join)
)
VOCAB_FILE = st.one_of(
    st.lists(VOCAB_LINE, max_size=25).map(lambda lines: "\n".join(lines).encode("utf-8")),
    st.lists(st.one_of(VOCAB_LINE.map(str.encode), st.binary(max_size=6)), max_size=25).map(
        b"\n".join
    ),
    st.binary(max_size=200),
)
VOCAB_TEXT = st.one_of(
    st.lists(st.one_of(VOCAB_PIECES, st.text(max_size=6)), max_size=12).map(" ".join),
    st.text(max_size=40),
)


def check_vocab(tmp_path: Path, data: bytes, text: str, lower: bool) -> None:
    # The tokenizer's Unicode tables are built once per process (~100 MB for a moment): before
    # the allocation guard, not inside it.
    Tokenizer(parse_vocab(b"[UNK]\n")).tokenize("\u00e9\u4e2d\u0391")
    with bounded():
        try:
            vocab = parse_vocab(data, "vocab.txt")
        except VocabError as exc:
            assert exc.message.startswith("vocab.txt"), exc.message
            return
        # Google's load_vocab: line i (bytes it cannot decode dropped, then strip()ped) is id i;
        # a token on two lines keeps the later id.
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        tokens = [line.decode("utf-8", "ignore").strip() for line in lines]
        assert list(vocab.tokens) == tokens
        assert vocab.ids == {token: i for i, token in enumerate(tokens)}
        tokenizer = Tokenizer(vocab, do_lower_case=lower)
        oracle = ReferenceTokenizer(vocab.ids, do_lower_case=lower)
        got, ids = tokenizer.tokenize_with_ids(text)
        expected = oracle.tokenize(text)
        assert got == expected, f"{text!r} with {tokens}"
        assert ids == oracle.convert_tokens_to_ids(expected)


@FAST
@given(data=VOCAB_FILE, text=VOCAB_TEXT, lower=st.booleans())
def test_vocab_fuzz(tmp_path, data, text, lower):
    check_vocab(tmp_path, data, text, lower)


@SLOW
@given(data=VOCAB_FILE, text=VOCAB_TEXT, lower=st.booleans())
def test_vocab_fuzz_10k(tmp_path, data, text, lower):
    check_vocab(tmp_path, data, text, lower)


# ============================================================================================
# TF checkpoint: index bytes, then structurally valid indexes whose entries lie
# ============================================================================================

ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 1, 6: 1, 9: 8, 10: 1, 14: 2, 19: 2}
RELEASE_INDEX = (TINY / "bert_model.ckpt.index").read_bytes()
MAGIC = bytes.fromhex("57fb808b247547db")
BIG = st.sampled_from([2**31, 2**32 + 4, 2**40, 2**62, 2**63 - 1, 2**64 - 1])
DIM = st.one_of(st.integers(0, 6), BIG, st.integers(-3, -1))


@st.composite
def lying_entry(draw) -> tuple[bytes, bytes]:
    """One tensor entry whose every field may lie: dtype, shape, shard, offset, size, CRC."""
    name = draw(
        st.one_of(
            st.sampled_from([b"w", b"bert/x", b"\x00slice", b"\xff\xfe"]), st.binary(max_size=10)
        )
    )
    dtype = draw(st.one_of(st.sampled_from([*DTYPES, 7]), st.integers(0, 30), BIG))
    shape = draw(st.one_of(st.lists(DIM, max_size=4), st.just([1] * 300)))
    numel = math.prod(max(d, 0) for d in shape)
    exact = numel * ITEMSIZE.get(dtype, 1)
    size = draw(st.one_of(st.just(exact), st.integers(0, 64), BIG, st.just(exact + 1)))
    offset = draw(st.one_of(st.integers(0, 64), BIG, st.integers(-8, -1)))
    shard = draw(st.one_of(st.just(0), st.integers(-2, 3), BIG))
    return name, entry_proto(
        dtype, shape, shard=shard, offset=offset, size=size, crc=draw(st.integers(0, 2**32 - 1)),
        slices=draw(st.booleans()) and draw(st.booleans()),
    )  # fmt: skip


@st.composite
def lying_index(draw) -> bytes:
    header = header_proto(
        num_shards=draw(st.one_of(st.just(1), st.integers(0, 3), BIG)),
        endianness=draw(st.sampled_from([0, 0, 0, 1, 9])),
        min_consumer=draw(st.sampled_from([0, 0, 1, 2])),
    )
    entries = dict(draw(st.lists(lying_entry(), max_size=6)))
    items = sorted([(b"", header), *((k, v) for k, v in entries.items() if k)])
    data = bytearray(build_table(items, per_block=draw(st.integers(1, 4))))
    if draw(st.booleans()):  # a few flipped bytes too (CRCs still wrong: caught there)
        data = bytearray(draw(mutated(bytes(data), max_edits=2)))
    return bytes(data)


INDEX_FILE = st.one_of(
    lying_index(),
    mutated(RELEASE_INDEX),
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda data: data + b"\0" * 40 + MAGIC),
)
DATA_FILE = st.one_of(st.none(), st.binary(max_size=128), st.just(b"\0" * 4096))


def check_checkpoint(tmp_path: Path, index: bytes, data: bytes | None) -> None:
    folder = fresh(tmp_path / "ckpt")
    (folder / "model.ckpt.index").write_bytes(index)
    if data is not None:
        (folder / "model.ckpt.data-00000-of-00001").write_bytes(data)
    with bounded():
        try:
            ckpt = Checkpoint(folder / "model.ckpt")
        except CheckpointError as exc:
            assert "model.ckpt" in exc.message, exc.message
            return
        for name, entry in ckpt.entries.items():
            try:
                array = ckpt.read(name)
                assert array.shape == entry.shape and array.nbytes == entry.size
                assert isinstance(ckpt.verify(name), bool)
            except CheckpointError as exc:
                assert repr(name) in exc.message or "data file" in exc.message, exc.message
        try:
            for entry, ok in ckpt.iter_verify():
                assert ok == (masked_crc32c(ckpt.read(entry.name).tobytes()) == entry.crc32c)
        except CheckpointError:
            pass


@FAST
@given(index=INDEX_FILE, data=DATA_FILE)
def test_checkpoint_index_fuzz(tmp_path, index, data):
    check_checkpoint(tmp_path, index, data)


@SLOW
@given(index=INDEX_FILE, data=DATA_FILE)
def test_checkpoint_index_fuzz_10k(tmp_path, index, data):
    check_checkpoint(tmp_path, index, data)


# ============================================================================================
# Zip archives
# ============================================================================================


def _release_zip(folder: str, method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"{folder}{f.name}")
    return buf.getvalue()


RELEASE_ZIPS = [_release_zip("m/", zipfile.ZIP_STORED), _release_zip("", zipfile.ZIP_DEFLATED)]
MEMBER_NAME = st.one_of(
    st.sampled_from(
        ["bert_config.json", "m/bert_config.json", "vocab.txt", "m/vocab.txt", "../evil",
         "m/../../evil", "/abs/evil", "C:/evil", "a\\..\\evil", "a/./b", "a//b", "evil\x00.txt",
         "dir/", "m/bert_model.ckpt.index", "x.zip", "__MACOSX/m/bert_config.json", "ünï", ""]
    ),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12),
)  # fmt: skip
KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "link": stat.S_IFLNK, "fifo": stat.S_IFIFO}
CONTENT = st.one_of(
    st.binary(max_size=64),
    st.just((TINY / "bert_config.json").read_bytes()),
    st.just(b"\0" * (1 << 20)),  # compresses 1000:1
)


@st.composite
def crafted_zip(draw) -> bytes:
    """A zip written member by member: hostile names, kinds, methods and flags; then, maybe,
    a size field in the central directory that lies."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if draw(st.booleans()):
            for f in sorted(TINY.iterdir()):
                zf.write(f, f"m/{f.name}")
        for _ in range(draw(st.integers(0, 4))):
            name = draw(MEMBER_NAME)
            info = zipfile.ZipInfo(name or "x")
            kind = draw(st.sampled_from(list(KINDS)))
            info.external_attr = (KINDS[kind] | 0o644) << 16
            info.compress_type = draw(
                st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
            )
            info.flag_bits |= draw(st.sampled_from([0, 0, 0x1]))
            with contextlib.suppress(ValueError):  # zipfile refuses a few combinations itself
                zf.writestr(info, draw(CONTENT))
    data = bytearray(buf.getvalue())
    central = [i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)]
    if central and draw(st.booleans()):
        at = draw(st.sampled_from(central)) + draw(st.sampled_from([20, 24]))  # sizes
        data[at : at + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    return bytes(data)


ZIP_FILE = st.one_of(
    crafted_zip(),
    st.sampled_from(RELEASE_ZIPS).flatmap(lambda z: mutated(z, max_edits=4)),
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda data: b"PK\x03\x04" + data),
)


def _everything_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def check_zip(tmp_path: Path, data: bytes) -> None:
    root = fresh(tmp_path / "zip")
    box = root / "a" / "b"  # '..' members would land in a/ or root/, where we look for them
    box.mkdir(parents=True)
    path = box / "model.zip"
    path.write_bytes(data)
    dest = box / "out" / "model"
    with bounded():
        with contextlib.suppress(archive.ArchiveError):
            for check in archive.check_members(path):
                assert check.ok or check.detail
        report = verify_zip(path)
        assert report.ok in (True, False)
        try:
            inspection.inspect_target(str(path))
        except BertctlError as exc:
            assert str(path) in exc.message, exc.message
        try:
            archive.safe_extract(path, dest)
        except archive.ArchiveError as exc:
            assert str(path) in exc.message, exc.message
            assert not dest.exists()
            assert _everything_under(root) == {Path("a"), Path("a/b"), Path("a/b/model.zip")}
            return
    made = _everything_under(dest)
    assert made and all(len(p.parts) == 1 for p in made)  # flattened: files only
    for p in made:
        assert (dest / p).is_file() and not (dest / p).is_symlink()
    outside = _everything_under(root) - {Path("a/b/out/model", p) for p in made}
    assert outside == {
        Path("a"),
        Path("a/b"),
        Path("a/b/model.zip"),
        Path("a/b/out"),
        Path("a/b/out/model"),
    }


@FAST
@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicate members on purpose
@given(data=ZIP_FILE)
def test_zip_fuzz(tmp_path, data):
    check_zip(tmp_path, data)


@SLOW
@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicate members on purpose
@given(data=ZIP_FILE)
def test_zip_fuzz_10k(tmp_path, data):
    check_zip(tmp_path, data)


# ============================================================================================
# model.safetensors headers (what inspect and verify read of an HF-format folder)
# ============================================================================================

ENTRY_VALUE = st.one_of(
    st.fixed_dictionaries(
        {
            "dtype": st.one_of(st.sampled_from(["F32", "F16", "I64", "BOOL"]), JSON_SCALAR),
            "shape": st.one_of(st.lists(st.integers(-2, 40), max_size=3), JSON_SCALAR),
            "data_offsets": st.one_of(
                st.lists(st.integers(-5, 10**6), min_size=2, max_size=2),
                st.lists(st.integers(0, 100), max_size=3),
                JSON_SCALAR,
            ),
        }
    ),
    JSON_VALUE,
)
HEADER = st.dictionaries(
    st.one_of(
        st.sampled_from(["bert.pooler.dense.weight", "__metadata__", "cls.x"]), st.text(max_size=8)
    ),
    ENTRY_VALUE,
    max_size=4,
)


def _safetensors_bytes(header: dict, length_lie: int | None, tail: bytes) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    length = len(raw) if length_lie is None else length_lie
    return length.to_bytes(8, "little") + raw + tail


WEIGHTS_FILE = st.one_of(
    st.builds(
        _safetensors_bytes,
        HEADER,
        st.one_of(st.none(), st.none(), st.integers(0, 2**64 - 1)),
        st.binary(max_size=64),
    ),
    st.binary(max_size=100),
)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "tiny"
    assert in_process("convert", TINY, "--out", folder).code == 0
    return folder


def check_weights(tmp_path: Path, hf_model: Path, data: bytes) -> None:
    from bertctl.verify import safetensors_header, verify_hf_folder

    folder = fresh(tmp_path / "weights")
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(hf_model / name, folder / name)
    path = folder / "model.safetensors"
    path.write_bytes(data)
    with bounded():
        for read in (lambda: safetensors_header(path), lambda: inspection.inspect_target(str(folder)),
                     lambda: verify_hf_folder(folder)):  # fmt: skip
            try:
                read()
            except BertctlError as exc:
                assert str(path) in exc.message, exc.message


@FAST
@given(data=WEIGHTS_FILE)
def test_safetensors_header_fuzz(tmp_path, hf_model, data):
    check_weights(tmp_path, hf_model, data)


@SLOW
@given(data=WEIGHTS_FILE)
def test_safetensors_header_fuzz_10k(tmp_path, hf_model, data):
    check_weights(tmp_path, hf_model, data)


# ============================================================================================
# Fine-tuning YAML (finetune --config)
# ============================================================================================

YAML_KEYS = st.one_of(
    st.sampled_from(sorted(ft_config.FIELDS)),
    st.sampled_from(sorted(ft_config.FIELDS)).map(lambda k: k.replace("_", "-")),
    st.text(max_size=8),
)
YAML_VALUES = st.one_of(
    st.sampled_from(
        [".nan", ".inf", "-.inf", "1e400", "2e-5", "0x1F", "0o17", "1_000", "-3", "0", "3",
         "99999999999999999999999", "true", "yes", "~", "null", "2001-12-14", "[1, 2]", "{a: 1}",
         "'quoted'", '"\\x00"', "!!binary aGk=", "!!float 'nan'", "!!str 3", "&x 3", "*x",
         "!!python/object/apply:os.system ['touch {marker}']",
         "!!python/name:os.system", "mrpc", "cpu", "bf16", "[[[[[[]]]]]]"]
    ),
    st.text(max_size=10).map(json.dumps),
    st.integers(-(2**40), 2**40).map(str),
    st.floats().map(repr),
)  # fmt: skip


def _alias_bomb(depth: int) -> str:
    """Anchors that multiply under string settings: 9 ** depth items if ever stringified."""
    keys = ["data", "model", "out", "device", "language", "text_a", "text_b", "label_column", "gpu_memory"]  # fmt: skip
    lines = [f"{keys[0]}: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, depth):
        lines.append(f"{keys[level]}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines)


YAML_FILE = st.one_of(
    st.lists(st.tuples(YAML_KEYS, YAML_VALUES), max_size=8).map(
        lambda pairs: "\n".join(f"{k}: {v}" for k, v in pairs).encode()
    ),
    st.integers(1, 9).map(lambda depth: _alias_bomb(depth).encode()),
    st.sampled_from([b"[" * 20_000, b"- " * 20_000, b"a: \xff\xfe", b"\x00", b"", b"- a\n- b"]),
    st.binary(max_size=200),
)
_TYPES = {f.name: str(f.type) for f in ft_config.fields(ft_config.FinetuneConfig)}


def check_yaml(tmp_path: Path, data: bytes) -> None:
    folder = fresh(tmp_path / "yaml")
    marker = folder / "MARKER"
    path = folder / "settings.yaml"
    path.write_bytes(data.replace(b"{marker}", str(marker).encode()))
    with bounded():
        try:
            cfg, explicit = ft_config.resolve(path, {})
        except BertctlError as exc:
            line = exc.one_line()
            assert str(path) in line or "--" in line, line  # names the file or the flag
            assert not marker.exists()
            return
    assert not marker.exists()
    for name in explicit:
        value, kind = getattr(cfg, name), _TYPES[name]
        if value is None:
            continue
        if kind.startswith("str"):
            assert isinstance(value, str), (name, value)
        elif kind.startswith("int"):
            assert type(value) is int, (name, value)
        elif kind.startswith("float"):
            assert type(value) is float and math.isfinite(value), (name, value)
        elif kind.startswith("bool"):
            assert type(value) is bool, (name, value)


@FAST
@given(data=YAML_FILE)
def test_finetune_yaml_fuzz(tmp_path, data):
    check_yaml(tmp_path, data)


@SLOW
@given(data=YAML_FILE)
def test_finetune_yaml_fuzz_10k(tmp_path, data):
    check_yaml(tmp_path, data)


# ============================================================================================
# The command line
# ============================================================================================


def _options() -> dict[tuple[str, ...], list[str]]:
    """Each command this fuzzes and its options, read from the app itself.

    download, demo, finetune, evaluate, predict and pretrain run are left out: given the right
    arguments they download models or train, which is not what a parser fuzz is for.
    """
    import typer

    from bertctl.cli import app

    root = typer.main.get_command(app)
    wanted = [("tokenize",), ("inspect",), ("models",), ("verify",), ("convert",), ("gpus",),
              ("plan",), ("pretrain", "prepare")]  # fmt: skip
    options = {}
    for path in wanted:
        command = root
        for part in path:
            command = command.commands[part]  # type: ignore[attr-defined]
        options[path] = [
            o for p in command.params for o in (*p.opts, *p.secondary_opts) if o[0] == "-"
        ]
    return options


OPTIONS = _options()
CORPUS = "corpus.txt"  # written into the working folder of each example
ARG_VALUES = st.one_of(
    st.sampled_from(
        ["-1", "0", "1", "2", "3", "5", "129", "nan", "inf", "-inf", "1e400", "12GiB", "0B",
         "-5GiB", "abc", "", "-", "--", "base-uncased", "tiny", "all-small", "hub:a/b",
         "https://example.invalid/x.zip", str(TINY), str(TINY / "vocab.txt"),
         str(TINY / "bert_config.json"), str(TINY / "bert_model.ckpt"), str(GLUE / "MRPC"),
         str(GLUE / "MRPC" / "train.tsv"), "model.zip", CORPUS, "out", "out/x", "/", "\x00",
         "a\nb", "a\rb", "--json", "0,1", "1,1", "bf16", "fp16", "sdpa", "eager", "mrpc"]
    ),
    st.text(max_size=8),
)  # fmt: skip
ARGV = (
    st.sampled_from(sorted(OPTIONS))
    .flatmap(
        lambda path: st.tuples(
            st.just(path),
            st.lists(st.one_of(st.sampled_from(OPTIONS[path]), ARG_VALUES), max_size=6),
        )
    )
    .map(lambda drawn: [*drawn[0], *drawn[1]])
)


def check_cli(tmp_path: Path, argv: list[str]) -> None:
    assume(not any("\x00" in a for a in argv))  # the OS refuses such arguments before we run
    work = fresh(tmp_path / "cli")
    (work / CORPUS).write_text("First sentence here.\nAnd a second one.\n\nAnother document.\n")
    (work / "model.zip").write_bytes(RELEASE_ZIPS[0])
    before = os.getcwd()
    os.chdir(work)
    try:
        with bounded(peak_bytes=None):  # whole commands: time only (see FAST_CLI)
            result = in_process(*argv, stdin="hello world\n")
    finally:
        os.chdir(before)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code in (0, 1, 2), (result.code, result.stderr)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    if result.code == 1:  # one error line, or (inspect, verify) a report of the problems found
        report = argv[0] in ("inspect", "verify") and not errors and result.stdout
        assert len(errors) == 1 or report, result.stderr
    elif result.code == 2:  # usage errors, ours and Typer's parse errors alike: one line
        assert len(errors) == 1, result.stderr


@FAST_CLI
@given(argv=ARGV)
def test_cli_arguments_fuzz(tmp_path, argv):
    check_cli(tmp_path, argv)


@SLOW
@given(argv=ARGV)
def test_cli_arguments_fuzz_10k(tmp_path, argv):
    check_cli(tmp_path, argv)


# The bounded() guard is the only thing between these tests and a hang; make sure it bites.
def test_the_guard_turns_a_hang_and_a_huge_allocation_into_failures():
    from fuzzing import Hang

    with pytest.raises(Hang), bounded(seconds=0.2):
        while True:
            pass
    with pytest.raises(AssertionError, match="allocated"), bounded(peak_bytes=1 << 20):
        bytearray(8 << 20)
