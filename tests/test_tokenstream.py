"""The file path of `tokenize`: fast JSON lines identical to json.dumps, chunks in order."""

from __future__ import annotations

import io
import json

from bertctl.tokenization import Tokenizer, bundled_vocab, parse_vocab
from bertctl.tokenstream import OutputFormat, chunks, tokenize_chunks

TEXTS = [
    'He said "hi" \\ then left.',
    "H\u00e9llo, w\u00f6rld! \u535a\u63a8 \u0391\u03a3",
    "",
    "tab\there\u2028and [MASK] $5",
]


def _expected(tok: Tokenizer, text: str) -> str:
    tokens, ids = tok.tokenize_with_ids(text)
    return json.dumps({"tokens": tokens, "ids": ids}, ensure_ascii=False)


def test_lean_json_lines_equal_json_dumps():
    # a vocab whose tokens need escaping in JSON
    vocab = parse_vocab('[UNK]\n"\n\\\nhe\nsaid\nhi\n##i\n\u00e9\nthen\nleft\n.\n'.encode())
    for tok in (Tokenizer(bundled_vocab(), True), Tokenizer(vocab, True), Tokenizer(vocab, False)):
        raw = io.BytesIO("".join(t + "\n" for t in TEXTS).encode())
        (block,) = list(tokenize_chunks(tok, chunks(raw), OutputFormat(as_json=True)))
        assert block.text.splitlines() == [_expected(tok, t) for t in TEXTS]


def test_chunks_keep_whole_lines_and_order():
    data = b"".join(f"line {i}\n".encode() for i in range(1000))
    parts = list(chunks(io.BytesIO(data), size=100))
    assert len(parts) > 10
    assert b"".join(b"".join(p) for p in parts) == data
    tok = Tokenizer(bundled_vocab(), True)
    blocks = list(tokenize_chunks(tok, iter(parts), OutputFormat(as_json=False)))
    lines = "".join(b.text for b in blocks).splitlines()
    assert len(lines) == 1000 and lines[999] == " ".join(tok.tokenize("line 999"))
    assert sum(b.lines for b in blocks) == 1000 and sum(b.nbytes for b in blocks) == len(data)


def test_undecodable_lines_are_numbered_across_chunks():
    data = b"ok\n" * 50 + b"bad \xff\n" + b"ok\n" * 10
    blocks = list(
        tokenize_chunks(
            Tokenizer(bundled_vocab(), True), chunks(io.BytesIO(data), size=32), OutputFormat(False)
        )
    )
    assert [n for b in blocks for n in b.bad_lines] == [51]
