"""The TensorFlow-free checkpoint reader against checkpoints TensorFlow itself wrote.

Fixtures under tests/fixtures/tf/ come from tests/fixtures/make_tf_fixtures.py (real TensorFlow,
dev-only); the toy checkpoint in the shared data folder was written by Google's BERT training
code. A small SSTable writer below, written from REFERENCE.md §3, builds the cases TensorFlow
never writes (several data blocks, Snappy, unknown dtypes, big-endian headers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertctl import tfcheckpoint as tfc
from bertctl.errors import CheckpointError
from bertctl.tfcheckpoint import Checkpoint, TensorEntry, masked_crc32c, resolve_prefix

TF = Path(__file__).resolve().parent / "fixtures" / "tf"
RELEASE = TF / "tiny_release"
DATA_SUFFIX = ".data-00000-of-00001"
OPENABLE = ["tiny_release", "tiny_train", "tiny_classifier", "dtypes", "sharded", "tf2_object"]
TINY = {"hidden": 32, "intermediate": 37, "vocab": 99, "positions": 64, "types": 2, "layers": 2}


def bert_shapes(
    layers: int, hidden: int, intermediate: int, vocab: int, positions: int, types: int, heads: bool
) -> dict[str, tuple[int, ...]]:
    """REFERENCE §2, spelled out independently of the fixture script."""
    h, i = hidden, intermediate
    shapes = {
        "bert/embeddings/word_embeddings": (vocab, h),
        "bert/embeddings/position_embeddings": (positions, h),
        "bert/embeddings/token_type_embeddings": (types, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
    }
    for n in range(layers):
        p = f"bert/encoder/layer_{n}/"
        for sub in ("attention/self/query", "attention/self/key", "attention/self/value"):
            shapes[p + sub + "/kernel"] = (h, h)
            shapes[p + sub + "/bias"] = (h,)
        shapes[p + "attention/output/dense/kernel"] = (h, h)
        shapes[p + "intermediate/dense/kernel"] = (h, i)
        shapes[p + "intermediate/dense/bias"] = (i,)
        shapes[p + "output/dense/kernel"] = (i, h)
        for sub in ("attention/output/dense/bias", "output/dense/bias"):
            shapes[p + sub] = (h,)
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + ln + "/gamma"] = (h,)
            shapes[p + ln + "/beta"] = (h,)
    if heads:
        shapes.update(
            {
                "cls/predictions/transform/dense/kernel": (h, h),
                "cls/predictions/transform/dense/bias": (h,),
                "cls/predictions/transform/LayerNorm/gamma": (h,),
                "cls/predictions/transform/LayerNorm/beta": (h,),
                "cls/predictions/output_bias": (vocab,),
                "cls/seq_relationship/output_weights": (2, h),
                "cls/seq_relationship/output_bias": (2,),
            }
        )
    return shapes


def with_slots(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    out = dict(shapes)
    for name, shape in shapes.items():
        out[name + "/adam_m"] = shape
        out[name + "/adam_v"] = shape
    out["global_step"] = ()
    return out


def shapes_of(ckpt: Checkpoint) -> dict[str, tuple[int, ...]]:
    return {name: entry.shape for name, entry in ckpt.entries.items()}


def copy_release(tmp_path: Path) -> Path:
    """A writable copy of tiny_release; returns its prefix."""
    folder = tmp_path / "release"
    shutil.copytree(RELEASE, folder)
    return folder / "bert_model.ckpt"


def raises_checkpoint_error(fn, *args):
    """Run ``fn`` and return the CheckpointError it raised (any other outcome fails)."""
    with pytest.raises(CheckpointError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------------------------------
# A minimal tensor-bundle writer from REFERENCE §3, for cases TensorFlow never produces.
# ---------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def pb_bytes(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def entry_proto(dtype: int, shape, *, shard=0, offset=0, size=None, crc=0, slices=False) -> bytes:
    itemsize = {1: 4, 2: 8, 3: 4, 4: 1, 6: 1, 9: 8, 10: 1, 14: 2, 19: 2}.get(dtype, 1)
    size = int(np.prod(shape, dtype=np.int64)) * itemsize if size is None else size
    dims = b"".join(pb_bytes(2, pb_varint(1, d) if d else b"") for d in shape)
    out = pb_varint(1, dtype) + pb_bytes(2, dims)
    for field, value in ((3, shard), (4, offset), (5, size)):
        out += pb_varint(field, value) if value else b""
    out += varint(6 << 3 | 5) + crc.to_bytes(4, "little")
    return out + (pb_bytes(7, b"\x0a\x00") if slices else b"")


def header_proto(num_shards: int = 1, endianness: int = 0, min_consumer: int = 0) -> bytes:
    version = pb_varint(1, 1) + (pb_varint(2, min_consumer) if min_consumer else b"")
    out = pb_varint(1, num_shards) if num_shards else b""
    return out + (pb_varint(2, endianness) if endianness else b"") + pb_bytes(3, version)


def common_prefix_length(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def build_block(items: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for n, (key, value) in enumerate(items):
        if n % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = common_prefix_length(last, key)
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        last = key
    restarts = restarts or [0]
    for r in restarts:
        out += r.to_bytes(4, "little")
    return bytes(out + len(restarts).to_bytes(4, "little"))


def build_table(
    items: list[tuple[bytes, bytes]], per_block: int = 3, compression: int = 0
) -> bytes:
    out = bytearray()

    def emit(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        trailer = bytes([compression])
        out.extend(contents + trailer + masked_crc32c(contents + trailer).to_bytes(4, "little"))
        return handle

    index = []
    for start in range(0, len(items), per_block):
        chunk = items[start : start + per_block]
        index.append((chunk[-1][0], emit(build_block(chunk))))
    meta = emit(build_block([]))
    handles = meta + emit(build_block(index, restart_interval=1))
    footer = handles.ljust(40, b"\0") + bytes.fromhex("57fb808b247547db")
    return bytes(out + footer)


def write_bundle(folder: Path, items: list[tuple[bytes, bytes]], **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.ckpt.index").write_bytes(build_table(sorted(items), **kwargs))
    return folder / "model.ckpt"


def simple_bundle(folder: Path, *extra: tuple[bytes, bytes], header: bytes | None = None) -> Path:
    """A bundle with one float32 [2] tensor ``w`` (data file included) plus ``extra`` entries."""
    data = np.array([1.0, 2.0], "<f4").tobytes()
    items = [
        (b"", header_proto() if header is None else header),
        (b"w", entry_proto(1, (2,), crc=masked_crc32c(data))),
        *extra,
    ]
    prefix = write_bundle(folder, items)
    Path(str(prefix) + DATA_SUFFIX).write_bytes(data)
    return prefix


# ---------------------------------------------------------------------------------------------
# Real checkpoints
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPENABLE)
def test_every_fixture_opens_and_every_crc_verifies(name):
    ckpt = Checkpoint(TF / name)
    assert ckpt.entries
    results = list(ckpt.iter_verify())
    assert [entry.name for entry, _ in results] == list(ckpt.entries)
    assert all(ok for _, ok in results)
    assert all(ckpt.verify(n) for n in ckpt.entries)
    for entry in ckpt.entries.values():
        assert isinstance(entry, TensorEntry)
        assert entry.size == entry.nbytes_expected
        assert ckpt.read(entry.name).shape == entry.shape


def test_tiny_release_has_exactly_the_reference_variables():
    ckpt = Checkpoint(RELEASE / "bert_model.ckpt")
    assert shapes_of(ckpt) == bert_shapes(**TINY, heads=True)
    assert len(ckpt.entries) == 5 + 16 * 2 + 2 + 7
    assert list(ckpt.entries) == sorted(ckpt.entries)  # index order is sorted order
    assert {e.dtype for e in ckpt.entries.values()} == {"float32"}
    assert ckpt.num_shards == 1 and ckpt.string_tensors == ()
    assert ckpt.entries["bert/encoder/layer_1/intermediate/dense/kernel"].shape == (32, 37)
    assert ckpt.entries["bert/embeddings/word_embeddings"].shape == (99, 32)
    # A release data file is float32 packed densely (REFERENCE §1).
    params = sum(e.numel for e in ckpt.entries.values())
    assert ckpt.data_path(0).stat().st_size == 4 * params
    assert ckpt.data_path(0) == RELEASE / ("bert_model.ckpt" + DATA_SUFFIX)


def test_tiny_release_folder_has_config_and_vocab():
    config = json.loads((RELEASE / "bert_config.json").read_text())
    assert len(config) == 11
    assert config["vocab_size"] == 99 and config["hidden_size"] == 32
    assert config["intermediate_size"] == 37 and config["hidden_act"] == "gelu"
    vocab = (RELEASE / "vocab.txt").read_text().splitlines()
    assert len(vocab) == 99 == len(set(vocab))
    assert vocab[0] == "[PAD]" and {"[UNK]", "[CLS]", "[SEP]", "[MASK]"} <= set(vocab)
    assert any(token.startswith("##") for token in vocab)


def test_tiny_train_has_slots_and_global_step():
    ckpt = Checkpoint(TF / "tiny_train")
    assert shapes_of(ckpt) == with_slots(bert_shapes(**TINY, heads=True))
    step = ckpt.entries["global_step"]
    assert (step.dtype, step.shape) == ("int64", ())
    assert ckpt.read("global_step") == 1000
    assert (ckpt.read("bert/pooler/dense/kernel/adam_v") >= 0).all()


def test_tiny_classifier_is_run_classifier_layout():
    ckpt = Checkpoint(TF / "tiny_classifier")
    expected = bert_shapes(**TINY, heads=False)
    expected.update(output_weights=(3, 32), output_bias=(3,))
    assert shapes_of(ckpt) == with_slots(expected)
    assert not any(name.startswith("cls/") for name in ckpt.entries)
    assert ckpt.prefix.name == "model.ckpt-343"
    assert ckpt.read("global_step") == 343
    assert np.array_equal(ckpt.read("output_bias"), np.full(3, 0.125, np.float32))


def test_dtypes_match_expected_json_exactly():
    expected = json.loads((TF / "dtypes" / "expected.json").read_text())
    ckpt = Checkpoint(TF / "dtypes")
    assert set(ckpt.entries) == set(expected)
    numpy_name = {"bfloat16": "uint16"}
    for name, spec in expected.items():
        entry = ckpt.entries[name]
        assert (entry.dtype, list(entry.shape)) == (spec["dtype"], spec["shape"]), name
        array = ckpt.read(name)
        dtype = np.dtype(numpy_name.get(spec["dtype"], spec["dtype"]))
        assert array.dtype == dtype and array.dtype.byteorder in "<|=", name
        want = np.array(spec["values"], dtype=dtype).reshape(spec["shape"])
        assert array.shape == want.shape and array.tobytes() == want.tobytes(), name
    assert set(tfc.DTYPES.values()) == {spec["dtype"] for spec in expected.values()}
    bits = ckpt.read("t_bfloat16").astype(np.uint32) << 16
    assert bits.view(np.float32).tolist() == expected["t_bfloat16"]["as_float32"]
    assert ckpt.entries["scalar"].numel == 1 and ckpt.entries["empty"].numel == 0


def test_read_is_read_only_and_memory_mapped():
    ckpt = Checkpoint(RELEASE)
    array = ckpt.read("bert/embeddings/word_embeddings")
    assert type(array) is np.ndarray and not array.flags.writeable
    assert isinstance(array.base, np.memmap)
    with pytest.raises(ValueError):
        array[0, 0] = 1.0
    assert not ckpt.read("bert/pooler/dense/bias").flags.writeable
    assert not Checkpoint(TF / "dtypes").read("empty").flags.writeable


def test_sharded_checkpoint_reads_both_shards():
    ckpt = Checkpoint(TF / "sharded")
    assert ckpt.num_shards == 2
    assert ckpt.data_path(1).name == "model.ckpt.data-00001-of-00002"
    assert {e.shard_id for e in ckpt.entries.values()} == {0, 1}
    assert ckpt.read("a/kernel").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert ckpt.read("b/kernel").tolist() == [0, -3, -6, -9]
    assert raises_checkpoint_error(ckpt.data_path, 2)


def test_tf2_object_checkpoint_lists_string_tensor_aside():
    ckpt = Checkpoint(TF / "tf2_object")
    assert ckpt.string_tensors == ("_CHECKPOINTABLE_OBJECT_GRAPH",)
    assert set(ckpt.entries) == {
        "dense/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "step/.ATTRIBUTES/VARIABLE_VALUE",
    }
    kernel = ckpt.read("dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert kernel.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert ckpt.read("step/.ATTRIBUTES/VARIABLE_VALUE") == 3


def test_google_written_toy_checkpoint(shared_data):
    ckpt = Checkpoint(shared_data / "tf_checkpoint_toy" / "bert_model.ckpt")
    toy = {"layers": 2, "hidden": 4, "intermediate": 16, "vocab": 15, "positions": 16, "types": 2}
    assert shapes_of(ckpt) == with_slots(bert_shapes(**toy, heads=True))
    assert len(ckpt.entries) == 139
    assert ckpt.entries["bert/embeddings/word_embeddings"].shape == (15, 4)
    assert ckpt.entries["bert/embeddings/word_embeddings/adam_m"].shape == (15, 4)
    assert ckpt.entries["global_step"].dtype == "int64"
    assert ckpt.read("global_step") == 20
    assert all(ok for _, ok in ckpt.iter_verify())
    assert np.isfinite(ckpt.read("bert/encoder/layer_1/output/dense/kernel")).all()


def test_unknown_tensor_name_suggests_close_ones():
    error = raises_checkpoint_error(Checkpoint(RELEASE).read, "bert/pooler/dense/kernal")
    assert "bert/pooler/dense/kernal" in error.message
    assert "bert/pooler/dense/kernel" in (error.hint or "")


# ---------------------------------------------------------------------------------------------
# Corrupt data files
# ---------------------------------------------------------------------------------------------


def test_flipped_data_byte_fails_exactly_that_tensor(tmp_path):
    prefix = copy_release(tmp_path)
    ckpt = Checkpoint(prefix)
    target = ckpt.entries["bert/encoder/layer_0/attention/self/key/kernel"]
    data = bytearray(ckpt.data_path(0).read_bytes())
    data[target.offset + target.size // 2] ^= 0x01
    ckpt.data_path(0).write_bytes(bytes(data))
    assert ckpt.verify(target.name) is False
    failed = [entry.name for entry, ok in ckpt.iter_verify() if not ok]
    assert failed == [target.name]


def test_truncated_data_file(tmp_path):
    prefix = copy_release(tmp_path)
    ckpt = Checkpoint(prefix)
    path = ckpt.data_path(0)
    path.write_bytes(path.read_bytes()[:-100])
    last = max(ckpt.entries.values(), key=lambda e: e.offset + e.size)
    error = raises_checkpoint_error(ckpt.read, last.name)
    assert "truncated" in error.message and str(path) in error.message
    raises_checkpoint_error(ckpt.verify, last.name)
    with pytest.raises(CheckpointError):
        list(ckpt.iter_verify())
    first = min(ckpt.entries.values(), key=lambda e: e.offset)
    assert ckpt.read(first.name).shape == first.shape  # tensors before the cut still read


def test_missing_data_file_is_named(tmp_path):
    prefix = copy_release(tmp_path)
    Path(str(prefix) + DATA_SUFFIX).unlink()
    ckpt = Checkpoint(prefix)  # the index alone opens
    error = raises_checkpoint_error(ckpt.read, "bert/pooler/dense/bias")
    assert "missing" in error.message and "bert_model.ckpt.data-00000-of-00001" in error.message
    raises_checkpoint_error(ckpt.verify, "bert/pooler/dense/bias")


# ---------------------------------------------------------------------------------------------
# Corrupt index files
# ---------------------------------------------------------------------------------------------


def corrupt_index(tmp_path: Path, mutate) -> CheckpointError:
    prefix = copy_release(Path(tempfile.mkdtemp(dir=tmp_path)))
    index = Path(str(prefix) + ".index")
    index.write_bytes(mutate(index.read_bytes()))
    error = raises_checkpoint_error(Checkpoint, prefix)
    assert str(index) in error.message
    return error


@pytest.mark.parametrize("keep", [0, 1, 20, 47, 48, 500, -1, -8, -47])
def test_truncated_index(tmp_path, keep):
    corrupt_index(tmp_path, lambda data: data[:keep])


def test_bad_magic(tmp_path):
    error = corrupt_index(tmp_path, lambda data: data[:-1] + b"\x00")
    assert "magic" in error.message


def test_flipped_byte_inside_block_is_a_crc_mismatch(tmp_path):
    def flip(data: bytes) -> bytes:
        spot = data.index(b"word_embeddings")
        return data[:spot] + bytes([data[spot] ^ 0x20]) + data[spot + 1 :]

    assert "CRC mismatch" in corrupt_index(tmp_path, flip).message


@pytest.mark.parametrize("seed", range(5))
def test_garbage_index(tmp_path, seed):
    rng = np.random.default_rng(seed)
    corrupt_index(tmp_path, lambda data: rng.integers(0, 256, len(data), np.uint8).tobytes())


def test_garbage_with_valid_magic(tmp_path):
    magic = bytes.fromhex("57fb808b247547db")
    corrupt_index(tmp_path, lambda data: b"\xff" * 40 + magic)  # varints longer than 10 bytes
    corrupt_index(tmp_path, lambda data: b"\x00" * 4000 + varint(10**9) * 4 + magic)


def test_missing_index_is_named(tmp_path):
    error = raises_checkpoint_error(Checkpoint, tmp_path / "nothing.ckpt")
    assert "nothing.ckpt.index" in error.message


# ---------------------------------------------------------------------------------------------
# Hand-built bundles: what TensorFlow never writes
# ---------------------------------------------------------------------------------------------


def test_many_small_blocks_parse_like_the_original(tmp_path):
    original = (RELEASE / "bert_model.ckpt.index").read_bytes()
    items = list(tfc.iter_table(original))
    prefix = write_bundle(tmp_path / "rebuilt", items, per_block=4)
    shutil.copy(RELEASE / ("bert_model.ckpt" + DATA_SUFFIX), str(prefix) + DATA_SUFFIX)
    rebuilt, reference = Checkpoint(prefix), Checkpoint(RELEASE)
    assert len(_blocks(Path(str(prefix) + ".index").read_bytes())) == 2 + 12  # 47 keys / 4
    assert rebuilt.entries == reference.entries  # same names, shapes, offsets, crcs
    assert all(ok for _, ok in rebuilt.iter_verify())


def test_partitioned_variable_names_the_tensor():
    error = raises_checkpoint_error(Checkpoint, TF / "partitioned")
    assert "bert/embeddings/word_embeddings" in error.message and "partitioned" in error.message


def test_snappy_blocks_are_refused_clearly(tmp_path):
    prefix = write_bundle(tmp_path, [(b"", header_proto())], compression=1)
    error = raises_checkpoint_error(Checkpoint, prefix)
    assert "Snappy" in error.message and error.hint


def test_unknown_dtype_names_tensor_and_enum(tmp_path):
    prefix = simple_bundle(tmp_path, (b"odd/thing", entry_proto(21, (2,), size=4)))
    error = raises_checkpoint_error(Checkpoint, prefix)
    assert "odd/thing" in error.message and "21" in error.message


@pytest.mark.parametrize(
    ("extra", "header", "words"),
    [
        ((), header_proto(endianness=1), "big-endian"),
        ((), header_proto(endianness=5), "endianness"),
        ((), header_proto(num_shards=0), "shards"),
        ((), header_proto(min_consumer=2), "version"),
        (((b"x", entry_proto(1, (3,), shard=1)),), None, "shard"),
        (((b"x", entry_proto(1, (3,), size=8)),), None, "bytes"),
        (((b"x", entry_proto(1, (3,), offset=-4)),), None, "offset"),
        (((b"x", entry_proto(1, (2,)) + b"\x0f"),), None, "wire type"),
        (((b"x", entry_proto(1, (2,)) + b"\x0a\x05ab"),), None, "past the end"),
        (((b"x", b"\x08\x01\x12\x04\x12\x02\x08\x7f\x18"),), None, "varint"),
        (((b"\x00x\x00\x01", entry_proto(1, (2,))),), None, "slices"),
        (((b"\xff\xfe", entry_proto(1, (2,))),), None, "UTF-8"),
    ],
)
def test_invalid_entries_and_headers(tmp_path, extra, header, words):
    prefix = simple_bundle(tmp_path, *extra, header=header)
    error = raises_checkpoint_error(Checkpoint, prefix)
    assert words in error.message


def test_missing_header(tmp_path):
    prefix = write_bundle(tmp_path, [(b"w", entry_proto(1, (2,)))])
    assert "header" in raises_checkpoint_error(Checkpoint, prefix).message


def test_keys_out_of_order(tmp_path):
    items = [(b"", header_proto()), (b"b", entry_proto(1, ())), (b"a", entry_proto(1, ()))]
    (tmp_path / "m.index").write_bytes(build_table(items))  # not sorted on purpose
    assert "order" in raises_checkpoint_error(Checkpoint, tmp_path / "m").message


def test_hand_built_bundle_reads(tmp_path):
    prefix = simple_bundle(tmp_path)
    ckpt = Checkpoint(prefix)
    assert ckpt.read("w").tolist() == [1.0, 2.0] and ckpt.verify("w")


# ---------------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------------


def test_masked_crc32c_known_values():
    crc = 0xE3069283  # CRC-32C of "123456789", the standard check value
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32
    assert masked_crc32c(b"") == 0xA282EAD8
    assert masked_crc32c(memoryview(b"x123456789")[1:]) == masked_crc32c(b"123456789")


def test_decode_varint():
    assert tfc.decode_varint(b"\xac\x02", 0, 2) == (300, 2)
    assert tfc.decode_varint(varint(2**64 - 1), 0, 10) == (2**64 - 1, 10)
    for bad, bits in [(b"\x80", 64), (b"\xff" * 11, 64), (b"\xff\xff\xff\xff\x1f", 32)]:
        with pytest.raises(CheckpointError):
            tfc.decode_varint(bad, 0, len(bad), bits)
    with pytest.raises(CheckpointError):
        tfc.decode_varint(b"\xff" * 9 + b"\x02", 0, 10)  # 65 bits


def test_resolve_prefix_spellings(tmp_path):
    prefix = RELEASE / "bert_model.ckpt"
    for spelling in (prefix, str(prefix) + ".index", str(prefix) + DATA_SUFFIX, RELEASE):
        assert resolve_prefix(spelling) == prefix
    assert resolve_prefix(str(prefix)) == prefix
    assert resolve_prefix(TF / "tiny_classifier") == TF / "tiny_classifier" / "model.ckpt-343"


def test_resolve_prefix_folders(tmp_path):
    error = raises_checkpoint_error(resolve_prefix, tmp_path)
    assert str(tmp_path) in error.message and error.hint
    for name in ("model.ckpt-1", "model.ckpt-2"):
        (tmp_path / f"{name}.index").write_bytes(b"")
    error = raises_checkpoint_error(resolve_prefix, tmp_path)
    assert "model.ckpt-1" in error.message and "model.ckpt-2" in error.message
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    assert resolve_prefix(tmp_path) == tmp_path / "bert_model.ckpt"
    error = raises_checkpoint_error(resolve_prefix, tmp_path / "vocab.txt")
    assert "vocab.txt" in error.message and error.hint


def test_module_imports_only_the_standard_library():
    code = (
        "import sys, bertctl.tfcheckpoint; "
        "print(sorted(m for m in ('numpy', 'google_crc32c', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Fuzzing the index parser
# ---------------------------------------------------------------------------------------------

ORIGINAL_INDEX = (RELEASE / "bert_model.ckpt.index").read_bytes()


def _blocks(data: bytes) -> list[tuple[int, int]]:
    meta, index = tfc.parse_footer(data)
    handles = [meta, index]
    for _, value in tfc.parse_block(tfc.read_block(data, index, "index")):
        handles.append(tfc.parse_block_handle(value))
    return handles


BLOCKS = _blocks(ORIGINAL_INDEX)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(RELEASE / ("bert_model.ckpt" + DATA_SUFFIX), folder)
    return folder


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(ORIGINAL_INDEX) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(0, len(ORIGINAL_INDEX))),
    fix_crcs=st.booleans(),
)
def test_fuzzed_index_parses_or_raises_checkpoint_error(fuzz_dir, edits, cut, fix_crcs):
    data = bytearray(ORIGINAL_INDEX)
    for position, value in edits:
        data[position] = value
    if fix_crcs:
        # Re-sign every block so the mutation reaches the entry and proto parsers instead of
        # stopping at the CRC check.
        for offset, size in BLOCKS:
            body = bytes(data[offset : offset + size + 1])
            data[offset + size + 1 : offset + size + 5] = masked_crc32c(body).to_bytes(4, "little")
    if cut is not None:
        del data[cut:]
    (fuzz_dir / "bert_model.ckpt.index").write_bytes(bytes(data))

    started = time.monotonic()
    try:
        ckpt = Checkpoint(fuzz_dir / "bert_model.ckpt")
    except CheckpointError:
        return
    for name in ckpt.entries:
        try:
            ckpt.read(name).sum()
            ckpt.verify(name)
        except CheckpointError:
            pass
    assert time.monotonic() - started < 5
