"""Read TensorFlow V2 checkpoints ("tensor bundles") without TensorFlow.

A checkpoint is a prefix ``P`` with two kinds of file beside it (REFERENCE.md §3):

* ``P.index`` -- a LevelDB-style SSTable whose key ``""`` holds a ``BundleHeaderProto`` and whose
  every other key is a tensor name mapped to a ``BundleEntryProto`` (dtype, shape, shard, offset,
  size, masked CRC32C);
* ``P.data-SSSSS-of-NNNNN`` -- the raw little-endian, row-major tensor bytes.

TF1 ``Saver`` and TF2 ``tf.train.Checkpoint`` both write this format. The whole index is parsed
and validated when a :class:`Checkpoint` is opened; tensors are memory-mapped on demand, so a
1.3 GB BERT-Large data file is never read into memory.

The index is treated as hostile input: every varint, offset and length is bounds-checked against
the bytes actually present before it is used, so a corrupt or malicious file raises
:class:`~bertctl.errors.CheckpointError` and nothing else.

Only the standard library is imported at module level; numpy (for arrays) and google_crc32c (for
checksums) are imported inside the functions that need them so that ``bertctl --help`` stays fast.
"""

from __future__ import annotations

import difflib
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bertctl.errors import CheckpointError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DTYPES",
    "Checkpoint",
    "TensorEntry",
    "masked_crc",
    "masked_crc32c",
    "resolve_prefix",
]

#: TensorFlow ``DataType`` enum value -> numpy dtype name. ``bfloat16`` has no numpy dtype:
#: :meth:`Checkpoint.read` returns its raw bits as ``uint16``.
DTYPES: dict[int, str] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    6: "int8",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    19: "float16",
}

# Bytes per element, kept here so TensorEntry needs no numpy.
_ITEMSIZE: dict[str, int] = {
    "float32": 4,
    "float64": 8,
    "int32": 4,
    "uint8": 1,
    "int8": 1,
    "int64": 8,
    "bool": 1,
    "bfloat16": 2,
    "float16": 2,
}

# Explicit little-endian numpy dtypes: the bundle header promises little-endian bytes, and a
# big-endian host must still decode them correctly.
_NUMPY_DTYPE: dict[str, str] = {
    "float32": "<f4",
    "float64": "<f8",
    "int32": "<i4",
    "uint8": "|u1",
    "int8": "|i1",
    "int64": "<i8",
    "bool": "|b1",
    "bfloat16": "<u2",
    "float16": "<f2",
}

# DT_STRING tensors are variable-length and not numeric; TF2 object-based checkpoints always
# hold one (``_CHECKPOINTABLE_OBJECT_GRAPH``), so they are listed aside instead of failing.
_DT_STRING = 7

_MAGIC = bytes.fromhex("57fb808b247547db")  # 0xdb4775248b80fb57 as two LE uint32 (lo, hi)
_FOOTER_SIZE = 48  # two BlockHandles zero-padded to 40 bytes, then the 8-byte magic
_HANDLES_SIZE = 40
_TRAILER_SIZE = 5  # 1 compression-type byte + masked CRC32C (uint32 LE)
_NO_COMPRESSION = 0
_SNAPPY = 1
_CRC_MASK_DELTA = 0xA282EAD8

# Sanity caps that keep hostile input from making us allocate or compute without bound. Real
# indexes are tiny (BERT-Large with Adam slots: ~100 KB); TF allows at most 254 dimensions.
_MAX_INDEX_BYTES = 64 << 20
_MAX_DIMS = 254
# Prefix compression lets a small block decode into much longer keys; real indexes expand ~3x,
# so decoded key bytes beyond this multiple of the file size can only come from a crafted file.
_KEY_EXPANSION = 16
_KEY_SLACK = 1 << 20

_CRC_CHUNK = 8 << 20  # read data files in 8 MiB pieces when checksumming
_BUNDLE_VERSION = 1  # kTensorBundleVersion: the newest format this reader understands

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")

_PREFIX_HINT = (
    "pass a checkpoint prefix (DIR/bert_model.ckpt), its .index or .data-* file, "
    "or the folder that holds it"
)


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as described by the index: where its bytes are and what they should hash to."""

    name: str
    dtype: str  #: a key of the numpy-name values of :data:`DTYPES`, e.g. ``"float32"``
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  #: masked CRC32C exactly as stored in the index

    @property
    def numel(self) -> int:
        """Number of elements (1 for a scalar, 0 when any dimension is 0)."""
        return math.prod(self.shape)

    @property
    def nbytes_expected(self) -> int:
        """Bytes that ``shape`` and ``dtype`` imply: ``numel * itemsize``."""
        return self.numel * _ITEMSIZE[self.dtype]


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def masked_crc(crc: int) -> int:
    """Mask a CRC32C the LevelDB/TF way (rotate right 15, add a constant), modulo 2**32.

    Masking exists so that a CRC stored inside CRC-protected data does not checksum to a
    trivially predictable value.
    """
    crc &= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """Masked CRC-32C (Castagnoli) of ``data``, as stored in bundle entries and block trailers."""
    import google_crc32c

    if isinstance(data, bytes):
        return masked_crc(google_crc32c.value(data))
    # The C extension only takes ``bytes``; copy views piecewise so a huge view never doubles
    # memory use.
    view = memoryview(data).cast("B")
    crc = 0
    for start in range(0, len(view), _CRC_CHUNK):
        crc = google_crc32c.extend(crc, bytes(view[start : start + _CRC_CHUNK]))
    return masked_crc(crc)


# --------------------------------------------------------------------------------------------
# Varints and protobuf wire format
# --------------------------------------------------------------------------------------------


def decode_varint(buf: bytes, pos: int, end: int, bits: int = 64) -> tuple[int, int]:
    """Decode a base-128 varint from ``buf[pos:end]``; return ``(value, position after it)``.

    At most ``ceil(bits / 7)`` bytes are consumed (5 for varint32, 10 for varint64) and the
    value must fit in ``bits`` bits, so a run of continuation bits can never loop past the data
    or build an unbounded integer.
    """
    value = 0
    for i in range((bits + 6) // 7):
        if pos + i >= end:
            raise CheckpointError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >> bits:
                raise CheckpointError(f"varint overflows {bits} bits")
            return value, pos + i + 1
    raise CheckpointError(f"varint{bits} longer than {(bits + 6) // 7} bytes")


def _varint32(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A varint that must fit in 32 bits (LevelDB block entry lengths)."""
    return decode_varint(buf, pos, end, 32)


def _varint64(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A varint that must fit in 64 bits (block handles, protobuf varints)."""
    return decode_varint(buf, pos, end, 64)


def _signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as protobuf int64/int32 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_proto(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into ``(field number, wire type, value)`` triples.

    Varint and fixed-width values come back as unsigned ints, length-delimited ones as bytes.
    Unknown fields are returned too (callers skip them, as protobuf does); groups and invalid
    wire types are errors because no bundle proto uses them.
    """
    fields: list[tuple[int, int, int | bytes]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint64(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise CheckpointError("protobuf field number 0")
        if wire == 0:
            value, pos = _varint64(buf, pos, end)
            fields.append((field, wire, value))
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise CheckpointError("truncated fixed-width protobuf field")
            fields.append((field, wire, int.from_bytes(buf[pos : pos + width], "little")))
            pos += width
        elif wire == 2:
            length, pos = _varint64(buf, pos, end)
            if length > end - pos:
                raise CheckpointError("protobuf field runs past the end of its message")
            fields.append((field, wire, buf[pos : pos + length]))
            pos += length
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} (field {field})")
    return fields


def _int(field: tuple[int, int, int | bytes], what: str, wire: int = 0) -> int:
    """The value of a varint field (fixed32 when ``wire`` is 5), after checking its wire type."""
    number, got, value = field
    if got != wire or not isinstance(value, int):
        raise CheckpointError(f"{what} (field {number}) has wire type {got}, expected {wire}")
    return value


def _message(field: tuple[int, int, int | bytes], what: str) -> bytes:
    """The bytes of a length-delimited field, after checking its wire type."""
    number, got, value = field
    if got != 2 or not isinstance(value, bytes):
        raise CheckpointError(f"{what} (field {number}) has wire type {got}, expected 2")
    return value


def parse_shape(buf: bytes) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto``: ``2 dim { 1 size }``, ``3 unknown_rank``."""
    dims: list[int] = []
    for field in parse_proto(buf):
        if field[0] == 2:
            size = 0  # proto3: a dimension of size 0 is stored as an empty message
            for sub in parse_proto(_message(field, "shape dim")):
                if sub[0] == 1:
                    size = _signed64(_int(sub, "dim size"))
            if size < 0:
                raise CheckpointError(f"dimension of unknown size ({size})")
            dims.append(size)
            if len(dims) > _MAX_DIMS:
                raise CheckpointError(f"more than {_MAX_DIMS} dimensions")
        elif field[0] == 3 and _int(field, "unknown_rank"):
            raise CheckpointError("shape of unknown rank")
    return tuple(dims)


@dataclass(frozen=True)
class _Header:
    num_shards: int
    endianness: int
    min_consumer: int
    bad_consumers: tuple[int, ...]


def parse_header(buf: bytes) -> _Header:
    """Decode a ``BundleHeaderProto``: 1 num_shards, 2 endianness, 3 version (VersionDef).

    VersionDef is ``1 producer, 2 min_consumer, 3 bad_consumers`` (repeated, maybe packed).
    """
    num_shards = endianness = min_consumer = 0
    bad: list[int] = []
    for field in parse_proto(buf):
        if field[0] == 1:
            num_shards = _signed64(_int(field, "num_shards"))
        elif field[0] == 2:
            endianness = _int(field, "endianness")
        elif field[0] == 3:
            for sub in parse_proto(_message(field, "version")):
                if sub[0] == 2:
                    min_consumer = _signed64(_int(sub, "min_consumer"))
                elif sub[0] == 3 and sub[1] == 0:
                    bad.append(_signed64(_int(sub, "bad_consumers")))
                elif sub[0] == 3:
                    packed = _message(sub, "bad_consumers")
                    pos = 0
                    while pos < len(packed):  # each step consumes >= 1 byte
                        item, pos = _varint64(packed, pos, len(packed))
                        bad.append(_signed64(item))
    return _Header(num_shards, endianness, min_consumer, tuple(bad))


@dataclass(frozen=True)
class _RawEntry:
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    partitioned: bool


def parse_entry(buf: bytes) -> _RawEntry:
    """Decode a ``BundleEntryProto``; fields proto3 omitted (zeros) default to 0.

    Fields: 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32), 7 slices.
    """
    dtype = shard_id = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    partitioned = False
    for field in parse_proto(buf):
        number = field[0]
        if number == 1:
            dtype = _int(field, "dtype")
        elif number == 2:
            shape = parse_shape(_message(field, "shape"))
        elif number == 3:
            shard_id = _signed64(_int(field, "shard_id"))
        elif number == 4:
            offset = _signed64(_int(field, "offset"))
        elif number == 5:
            size = _signed64(_int(field, "size"))
        elif number == 6:
            crc = _int(field, "crc32c", wire=5)
        elif number == 7:
            partitioned = True  # slices: only partitioned variables have them
    return _RawEntry(dtype, shape, shard_id, offset, size, crc, partitioned)


# --------------------------------------------------------------------------------------------
# SSTable: footer, blocks, block entries
# --------------------------------------------------------------------------------------------


def parse_footer(data: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return the ``(offset, size)`` handles of the metaindex and index blocks from the footer."""
    if len(data) < _FOOTER_SIZE:
        raise CheckpointError(f"file is {len(data)} bytes, shorter than the 48-byte footer")
    if data[-8:] != _MAGIC:
        raise CheckpointError("bad magic number: not a TensorFlow V2 checkpoint index")
    pos = len(data) - _FOOTER_SIZE
    end = pos + _HANDLES_SIZE
    meta_offset, pos = _varint64(data, pos, end)
    meta_size, pos = _varint64(data, pos, end)
    index_offset, pos = _varint64(data, pos, end)
    index_size, pos = _varint64(data, pos, end)
    return (meta_offset, meta_size), (index_offset, index_size)


def read_block(data: bytes, handle: tuple[int, int], what: str) -> bytes:
    """Return the contents of the block at ``handle`` after checking bounds, CRC and compression.

    The block and its 5-byte trailer must lie before the footer; the trailer's masked CRC32C
    covers the contents plus the compression-type byte.
    """
    offset, size = handle
    limit = len(data) - _FOOTER_SIZE
    if offset > limit or size > limit - offset or limit - offset - size < _TRAILER_SIZE:
        raise CheckpointError(
            f"{what} block (offset {offset}, size {size}) lies outside the file ({len(data)} bytes)"
        )
    end = offset + size
    stored = int.from_bytes(data[end + 1 : end + _TRAILER_SIZE], "little")
    if masked_crc32c(data[offset : end + 1]) != stored:
        raise CheckpointError(f"{what} block at offset {offset}: CRC mismatch (file is corrupt)")
    compression = data[end]
    if compression == _SNAPPY:
        raise CheckpointError(
            f"{what} block at offset {offset} is Snappy-compressed, which bertctl does not read",
            hint="re-save the checkpoint with TensorFlow's default (uncompressed) table options",
        )
    if compression != _NO_COMPRESSION:
        raise CheckpointError(f"{what} block at offset {offset}: unknown compression {compression}")
    return data[offset:end]


def parse_block(block: bytes, key_budget: list[int] | None = None) -> list[tuple[bytes, bytes]]:
    """Decode the ``(key, value)`` entries of one block's contents, in stored order.

    Layout: entries, then ``num_restarts`` uint32 restart offsets, then ``num_restarts``. Each
    entry is varint32 shared, varint32 unshared, varint32 value length, key suffix, value; the
    key is the previous key's first ``shared`` bytes plus the suffix. Every restart offset must
    name an entry that shares nothing with its predecessor (the LevelDB invariant).

    ``key_budget``, when given, is a one-item list of decoded key bytes still allowed, shared
    by all blocks of a file; it is decremented so prefix compression cannot be abused to expand
    a small file into gigabytes of keys. Without it, a budget of 16 x the block size applies.
    """
    if key_budget is None:
        key_budget = [_KEY_EXPANSION * len(block) + _KEY_SLACK]
    size = len(block)
    if size < 4:
        raise CheckpointError(f"block of {size} bytes has no restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    if num_restarts == 0 or num_restarts > (size - 4) // 4:
        raise CheckpointError(f"block of {size} bytes cannot hold {num_restarts} restart points")
    entries_end = size - 4 - 4 * num_restarts
    restarts = struct.unpack_from(f"<{num_restarts}I", block, entries_end)

    entries: list[tuple[bytes, bytes]] = []
    fresh_starts: set[int] = set()  # offsets of entries with shared == 0
    key = b""
    pos = 0
    while pos < entries_end:
        start = pos
        shared, pos = _varint32(block, pos, entries_end)
        unshared, pos = _varint32(block, pos, entries_end)
        value_len, pos = _varint32(block, pos, entries_end)
        if shared > len(key):
            raise CheckpointError(f"entry shares {shared} bytes with a {len(key)}-byte key")
        if unshared > entries_end - pos or value_len > entries_end - pos - unshared:
            raise CheckpointError("block entry runs past the end of the block")
        key_budget[0] -= shared + unshared
        if key_budget[0] < 0:
            raise CheckpointError("keys expand far beyond the file size (crafted or corrupt)")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
        if shared == 0:
            fresh_starts.add(start)

    for restart in restarts:
        if restart not in fresh_starts if entries else restart != 0:
            raise CheckpointError(f"restart offset {restart} does not start a block entry")
    return entries


def parse_block_handle(value: bytes) -> tuple[int, int]:
    """Decode an index-block value: varint64 offset, varint64 size, nothing after."""
    offset, pos = _varint64(value, 0, len(value))
    size, pos = _varint64(value, pos, len(value))
    if pos != len(value):
        raise CheckpointError("index entry has bytes after its block handle")
    return offset, size


def iter_table(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield every ``(key, value)`` of the SSTable in ``data``, checking keys strictly increase.

    Data blocks must appear in file order without overlapping, so each byte of the file is
    parsed at most once and a crafted index cannot make us revisit a block.
    """
    meta_handle, index_handle = parse_footer(data)
    budget = [_KEY_EXPANSION * len(data) + _KEY_SLACK]
    parse_block(read_block(data, meta_handle, "metaindex"), budget)  # unused by TF; validated
    index = parse_block(read_block(data, index_handle, "index"), budget)

    previous: bytes | None = None
    next_free = 0  # first file offset a following data block may start at
    last_separator: bytes | None = None
    for separator, value in index:
        if last_separator is not None and separator <= last_separator:
            raise CheckpointError("index block keys are not in increasing order")
        offset, size = parse_block_handle(value)
        if offset < next_free:
            raise CheckpointError(f"data block at offset {offset} overlaps the previous one")
        block = read_block(data, (offset, size), "data")
        next_free = offset + size + _TRAILER_SIZE
        for key, entry in parse_block(block, budget):
            if previous is not None and key <= previous:
                raise CheckpointError("tensor names are not in strictly increasing order")
            if last_separator is not None and key <= last_separator:
                raise CheckpointError("data block key falls before its index separator")
            if key > separator:
                raise CheckpointError("data block key is past its index separator")
            previous = key
            yield key, entry
        last_separator = separator


# --------------------------------------------------------------------------------------------
# Finding the checkpoint
# --------------------------------------------------------------------------------------------


def _strip(path: Path, suffix_len: int) -> Path:
    return path.with_name(path.name[:-suffix_len])


def resolve_prefix(path: str | Path) -> Path:
    """Turn any usual spelling of a checkpoint into its prefix (``DIR/bert_model.ckpt``).

    Accepted: the prefix itself, its ``.index`` file, one of its ``.data-*`` files (or ``.meta``),
    or a folder holding exactly one ``*.index`` (``bert_model.ckpt`` wins when there are several).
    The returned prefix always has an existing ``.index`` file.
    """
    given = Path(path)
    if given.is_dir():
        indexes = sorted(p for p in given.glob("*.index") if p.is_file())
        if not indexes:
            raise CheckpointError(
                f"no checkpoint in folder {given}: it has no *.index file", hint=_PREFIX_HINT
            )
        if len(indexes) > 1:
            preferred = given / "bert_model.ckpt.index"
            if preferred in indexes:
                return given / "bert_model.ckpt"
            names = ", ".join(p.name[: -len(".index")] for p in indexes[:5])
            more = f" and {len(indexes) - 5} more" if len(indexes) > 5 else ""
            raise CheckpointError(
                f"folder {given} holds {len(indexes)} checkpoints ({names}{more})",
                hint=f"pass one prefix, e.g. {_strip(indexes[-1], len('.index'))}",
            )
        return _strip(indexes[0], len(".index"))

    name = given.name
    match = _DATA_SUFFIX.search(name)
    if name.endswith(".index"):
        prefix = _strip(given, len(".index"))
    elif match:
        prefix = _strip(given, len(match.group(0)))
    elif name.endswith(".meta"):
        prefix = _strip(given, len(".meta"))
    else:
        prefix = given
    index = prefix.with_name(prefix.name + ".index")
    if not prefix.name or not index.is_file():
        raise CheckpointError(
            f"no checkpoint at {given}: {index} does not exist", hint=_PREFIX_HINT
        )
    return prefix


# --------------------------------------------------------------------------------------------
# The checkpoint
# --------------------------------------------------------------------------------------------


class Checkpoint:
    """A validated view of a V2 checkpoint: its entries, their bytes, their checksums.

    Opening parses and checks the whole ``.index`` (footer magic, block CRCs, key order, header,
    every entry); data files are only touched by :meth:`read` and :meth:`verify`.
    """

    prefix: Path
    num_shards: int
    entries: dict[str, TensorEntry]
    #: names of DT_STRING tensors (e.g. TF2's ``_CHECKPOINTABLE_OBJECT_GRAPH``): not numeric, so
    #: they are kept out of :attr:`entries`, cannot be read and are not verified.
    string_tensors: tuple[str, ...]

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = resolve_prefix(prefix)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        try:
            size = self.index_path.stat().st_size
            if size > _MAX_INDEX_BYTES:
                raise CheckpointError(
                    f"{self.index_path} is {size} bytes, far larger than any checkpoint index"
                )
            data = self.index_path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.index_path}: {exc.strerror or exc}") from None
        try:
            self._load(data)
        except CheckpointError as exc:
            raise CheckpointError(
                f"cannot read checkpoint index {self.index_path}: {exc.message}",
                hint=exc.hint or "re-download or re-extract the checkpoint",
            ) from None

    def _load(self, data: bytes) -> None:
        """Fill ``num_shards``, ``entries`` and ``string_tensors`` from the index bytes."""
        table = iter_table(data)
        first = next(table, None)
        if first is None or first[0] != b"":
            raise CheckpointError('no bundle header (the "" key)')
        header = parse_header(first[1])
        if header.endianness == 1:
            raise CheckpointError(
                "the checkpoint is big-endian", hint="re-save it on a little-endian machine"
            )
        if header.endianness != 0:
            raise CheckpointError(f"unknown endianness {header.endianness}")
        if header.min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in header.bad_consumers:
            raise CheckpointError(
                f"written in bundle format version {header.min_consumer}, newer than this reader"
            )
        if not 1 <= header.num_shards < 1 << 31:
            raise CheckpointError(f"header gives {header.num_shards} shards")
        self.num_shards = header.num_shards

        entries: dict[str, TensorEntry] = {}
        strings: list[str] = []
        slice_keys = 0
        for key, value in table:
            if key.startswith(b"\x00"):
                # Slices of partitioned variables are stored under binary keys that begin with
                # a NUL; their parent entry (with field 7) is reported below by name.
                slice_keys += 1
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError(f"tensor name {key[:60]!r} is not UTF-8") from None
            try:
                raw = parse_entry(value)
            except CheckpointError as exc:
                raise CheckpointError(f"entry for tensor {name!r}: {exc.message}") from None
            entry = self._check_entry(name, raw)
            if entry is None:
                strings.append(name)
            else:
                entries[name] = entry
        if slice_keys:
            raise CheckpointError(f"{slice_keys} tensor slices without a partitioned variable")
        self.entries = entries
        self.string_tensors = tuple(strings)

    def _check_entry(self, name: str, raw: _RawEntry) -> TensorEntry | None:
        """Validate one entry against the header; ``None`` for a DT_STRING tensor."""
        if raw.partitioned:
            raise CheckpointError(
                f"tensor {name!r} is a partitioned variable (saved as slices), "
                "which bertctl does not read",
                hint="re-save it without a partitioner on tf.get_variable",
            )
        if raw.dtype == _DT_STRING:
            return None
        dtype = DTYPES.get(raw.dtype)
        if dtype is None:
            raise CheckpointError(
                f"tensor {name!r} has unsupported dtype enum {raw.dtype}",
                hint="supported: " + ", ".join(f"{k} {v}" for k, v in DTYPES.items()),
            )
        if not 0 <= raw.shard_id < self.num_shards:
            raise CheckpointError(
                f"tensor {name!r} is in shard {raw.shard_id} of {self.num_shards}"
            )
        if raw.offset < 0 or raw.size < 0:
            raise CheckpointError(f"tensor {name!r} has offset {raw.offset}, size {raw.size}")
        entry = TensorEntry(name, dtype, raw.shape, raw.shard_id, raw.offset, raw.size, raw.crc32c)
        if entry.nbytes_expected != raw.size:
            raise CheckpointError(
                f"tensor {name!r} ({dtype} {list(raw.shape)}) should take "
                f"{entry.nbytes_expected} bytes but the index says {raw.size}"
            )
        return entry

    # -- data files -------------------------------------------------------------------------

    def data_path(self, shard_id: int) -> Path:
        """The data file of shard ``shard_id``: ``<prefix>.data-00000-of-00001`` style."""
        if not 0 <= shard_id < self.num_shards:
            raise CheckpointError(f"shard {shard_id} does not exist ({self.num_shards} shards)")
        suffix = f".data-{shard_id:05d}-of-{self.num_shards:05d}"
        return self.prefix.with_name(self.prefix.name + suffix)

    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.entries), n=3)
            hint = "did you mean " + ", ".join(close) if close else None
            raise CheckpointError(f"no tensor named {name!r} in {self.prefix}", hint=hint) from None

    def _checked_data_file(self, entry: TensorEntry) -> Path:
        """The entry's data file, after checking it exists and is long enough to hold it."""
        path = self.data_path(entry.shard_id)
        try:
            length = path.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(
                f"missing data file {path}",
                hint="the .index and every .data-NNNNN-of-NNNNN file must sit side by side",
            ) from None
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
        if entry.offset + entry.size > length:
            raise CheckpointError(
                f"data file {path} is truncated: tensor {entry.name!r} needs bytes up to "
                f"{entry.offset + entry.size}, the file has {length}",
                hint="re-download or re-extract the checkpoint",
            )
        return path

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a read-only, memory-mapped, shaped numpy array.

        Values are decoded little-endian whatever the host. ``bfloat16`` tensors come back as
        their raw ``uint16`` bits (numpy has no bfloat16): ``(bits.astype(np.uint32) << 16)
        .view(np.float32)`` gives the float values.
        """
        import numpy as np

        entry = self._entry(name)
        path = self._checked_data_file(entry)
        dtype = np.dtype(_NUMPY_DTYPE[entry.dtype])
        if entry.numel == 0:
            # mmap cannot map zero bytes; an empty tensor has nothing to read anyway.
            empty = np.zeros(entry.shape, dtype)
            empty.flags.writeable = False
            return empty
        try:
            mapped = np.memmap(
                path, dtype=dtype, mode="r", offset=entry.offset, shape=(entry.numel,)
            )
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot map tensor {name!r} from {path}: {exc}") from None
        return mapped.reshape(entry.shape).view(np.ndarray)

    def _crc_from(self, entry: TensorEntry, handle: BinaryIO, path: Path) -> int:
        """Stream the entry's bytes from an open data file and return their masked CRC32C."""
        import google_crc32c

        handle.seek(entry.offset)
        crc = 0
        remaining = entry.size
        while remaining:
            chunk = handle.read(min(remaining, _CRC_CHUNK))
            if not chunk:
                raise CheckpointError(f"data file {path} ended inside tensor {entry.name!r}")
            crc = google_crc32c.extend(crc, chunk)
            remaining -= len(chunk)
        return masked_crc(crc)

    def verify(self, name: str) -> bool:
        """Whether the masked CRC32C of the tensor's bytes equals the one in the index.

        A missing or too-short data file raises :class:`CheckpointError` rather than returning
        ``False``: that is a broken download, not a flipped bit.
        """
        entry = self._entry(name)
        path = self._checked_data_file(entry)
        try:
            with path.open("rb") as handle:
                return self._crc_from(entry, handle, path) == entry.crc32c
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None

    def iter_verify(self) -> Iterator[tuple[TensorEntry, bool]]:
        """Check every tensor in index order, yielding ``(entry, ok)`` as each one finishes.

        Each shard's data file is opened once and read in bounded chunks, so this streams a
        multi-gigabyte checkpoint with constant memory (and can drive a progress bar).
        """
        handles: dict[int, BinaryIO] = {}
        try:
            for entry in self.entries.values():
                path = self._checked_data_file(entry)
                handle = handles.get(entry.shard_id)
                try:
                    if handle is None:
                        handle = handles[entry.shard_id] = path.open("rb")
                    crc = self._crc_from(entry, handle, path)
                except OSError as exc:
                    raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
                yield entry, crc == entry.crc32c
        finally:
            for handle in handles.values():
                handle.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.prefix)!r}, {len(self.entries)} tensors)"
