"""bertctl's fast tokenizer against Google's behaviour (REFERENCE.md §4) and a literal oracle.

Three layers:

* Google's own reference cases and the edge cases where the Rust `tokenizers` BertWordPiece
  pipeline parts from Google; each edge case is checked against the oracle in
  tests/reference_tokenization.py and, where it means something, shown to come out differently
  from `tokenizers`, so the case is known to be sensitive.
* A differential run over real multilingual text (Babel's CLDR data and Faker's locale providers,
  read at test time) in both casing modes: zero differences allowed.
* Property tests with Hypothesis over arbitrary Unicode, biased toward the characters that matter.
"""

from __future__ import annotations

import time
import unicodedata
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_tokenization import ReferenceTokenizer

from bertctl.errors import VocabError
from bertctl.tokenization import (
    Tokenizer,
    Vocab,
    basic_tokenize,
    build_inputs,
    bundled_vocab,
    parse_vocab,
    truncate_seq_pair,
)

MODES = [pytest.param(True, id="uncased"), pytest.param(False, id="cased")]

TOY_VOCAB = b"[UNK]\n[CLS]\n[SEP]\nwant\n##want\n##ed\nwa\nun\nrunn\n##ing\n,\n"


@cache
def fast(do_lower_case: bool) -> Tokenizer:
    """bertctl's tokenizer over the bundled uncased vocab, one per mode and process."""
    return Tokenizer(bundled_vocab(), do_lower_case=do_lower_case)


@cache
def reference(do_lower_case: bool) -> ReferenceTokenizer:
    """The oracle over the bundled uncased vocab, one per mode and process."""
    return ReferenceTokenizer(bundled_vocab().ids, do_lower_case=do_lower_case)


def checked(text: str, do_lower_case: bool, vocab: Vocab | None = None) -> tuple[list, list]:
    """Tokens and ids from the fast path, after asserting the oracle gives exactly the same."""
    if vocab is None:
        tokenizer, oracle = fast(do_lower_case), reference(do_lower_case)
    else:
        tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
        oracle = ReferenceTokenizer(vocab.ids, do_lower_case=do_lower_case)
    tokens, ids = tokenizer.tokenize_with_ids(text)
    expected = oracle.tokenize(text)
    assert tokens == expected, f"{text!r}: fast {tokens} != reference {expected}"
    assert ids == oracle.convert_tokens_to_ids(expected)
    return tokens, ids


def checked_basic(text: str, do_lower_case: bool) -> list[str]:
    """Basic tokens from the fast path, after asserting the oracle gives exactly the same."""
    words = basic_tokenize(text, do_lower_case)
    expected = reference(do_lower_case).basic_tokenize(text)
    assert words == expected, f"{text!r}: fast {words} != reference {expected}"
    return words


def rust_pipeline(vocab: Vocab, do_lower_case: bool, max_input_chars_per_word: int = 100):
    """The `tokenizers` BertWordPiece pipeline that users reach for (defaults unless asked)."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    pipeline = tokenizers.Tokenizer(
        WordPiece(
            dict(vocab.ids), unk_token="[UNK]", max_input_chars_per_word=max_input_chars_per_word
        )
    )
    pipeline.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=do_lower_case,
        lowercase=do_lower_case,
    )
    pipeline.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return pipeline


def rust_words(text: str, do_lower_case: bool) -> list[str]:
    """What `tokenizers` hands to WordPiece: the counterpart of Google's basic tokens."""
    pipeline = rust_pipeline(bundled_vocab(), do_lower_case)
    normalized = pipeline.normalizer.normalize_str(text)
    return [word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(normalized)]


def rust_tokens(text: str, do_lower_case: bool, max_input_chars_per_word: int = 100) -> list[str]:
    pipeline = rust_pipeline(bundled_vocab(), do_lower_case, max_input_chars_per_word)
    return pipeline.encode(text, add_special_tokens=False).tokens


# --------------------------------------------------------------------------------------------
# Google's reference cases
# --------------------------------------------------------------------------------------------


def test_toy_vocab_full_tokenizer_uncased():
    toy = parse_vocab(TOY_VOCAB)
    tokens, ids = checked("UNwant\u00e9d,running", True, toy)
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert ids == [7, 4, 5, 10, 8, 9]


def test_toy_vocab_full_tokenizer_cased():
    toy = parse_vocab(TOY_VOCAB)
    tokens, ids = checked("UNwant\u00e9d,running", False, toy)
    assert tokens == ["[UNK]", ",", "runn", "##ing"]
    assert ids == [0, 10, 8, 9]


def test_toy_vocab_wordpiece_cases():
    toy = parse_vocab(TOY_VOCAB)
    assert checked("", True, toy) == ([], [])
    assert checked("unwanted running", True, toy)[0] == ["un", "##want", "##ed", "runn", "##ing"]
    assert checked("unwantedX running", True, toy)[0] == ["[UNK]", "runn", "##ing"]


@pytest.mark.parametrize(
    ("do_lower_case", "expected"),
    [
        (True, ["hello", "!", "how", "are", "you", "?"]),
        (False, ["HeLLo", "!", "how", "Are", "yoU", "?"]),
    ],
)
def test_basic_tokenizer_hello(do_lower_case, expected):
    assert checked_basic(" \tHeLLo!how  \n Are yoU?  ", do_lower_case) == expected


@pytest.mark.parametrize(
    ("do_lower_case", "expected"), [(True, ["hello"]), (False, ["H\u00e9llo"])]
)
def test_basic_tokenizer_accents(do_lower_case, expected):
    assert checked_basic("H\u00e9llo", do_lower_case) == expected


@pytest.mark.parametrize("do_lower_case", MODES)
def test_basic_tokenizer_chinese(do_lower_case):
    assert checked_basic("ah\u535a\u63a8zz", do_lower_case) == ["ah", "\u535a", "\u63a8", "zz"]


def test_john_johanson_with_the_real_vocab():
    tokens, _ = checked("John Johanson's,", True)
    assert tokens == ["john", "johan", "##son", "'", "s", ","]


@pytest.mark.parametrize(
    ("do_lower_case", "expected"), [(True, ["[", "mask", "]"]), (False, ["[", "MASK", "]"])]
)
def test_raw_mask_is_split_like_any_text(do_lower_case, expected):
    assert checked_basic("[MASK]", do_lower_case) == expected
    tokens, _ = checked("[MASK]", do_lower_case)
    assert "[MASK]" not in tokens
    if do_lower_case:
        assert tokens == ["[", "mask", "]"]


def test_raw_mask_is_matched_by_rust_tokenizers_once_registered():
    pipeline = rust_pipeline(bundled_vocab(), True)
    pipeline.add_special_tokens(["[MASK]"])
    assert pipeline.encode("a [MASK] b", add_special_tokens=False).tokens == ["a", "[MASK]", "b"]
    assert checked("a [MASK] b", True)[0] == ["a", "[", "mask", "]", "b"]


def test_john_smith_ids_and_inputs():
    vocab = bundled_vocab()
    tokens, ids = checked("John Smith", True)
    assert tokens == ["john", "smith"]
    assert ids == [2198, 3044]
    encoding = build_inputs(vocab, tokens, ids)
    assert encoding.tokens == ["[CLS]", "john", "smith", "[SEP]"]
    assert encoding.input_ids == [101, 2198, 3044, 102]
    assert encoding.segment_ids == [0, 0, 0, 0]
    assert encoding.input_mask == [1, 1, 1, 1]


# --------------------------------------------------------------------------------------------
# Edge cases where the Rust `tokenizers` BertWordPiece pipeline parts from Google
# --------------------------------------------------------------------------------------------


def test_greek_final_sigma_follows_str_lower():
    assert "ΟΔΟΣ".lower() == "οδος"  # Python's own rule: σ at the end of a word becomes ς
    assert checked_basic("ΟΔΟΣ", True) == ["οδος"]
    assert checked_basic("ΟΔΟΣ ΣΑΣ", True) == ["οδος", "σας"]
    assert checked_basic("ΟΔΟΣ", False) == ["ΟΔΟΣ"]
    tokens, _ = checked("ΟΔΟΣ ΣΑΣ", True)
    assert tokens == ["ο", "##δ", "##ος", "σ", "##α", "##ς"]
    assert rust_words("ΟΔΟΣ ΣΑΣ", True) == ["οδοσ", "σασ"]
    assert rust_tokens("ΟΔΟΣ ΣΑΣ", True) == ["ο", "##δ", "##ο", "##σ", "σ", "##α", "##σ"]


def test_sigma_is_lowercased_in_the_whitespace_word_before_punctuation_splits_it():
    # str.lower() sees the whole whitespace-separated word. "." and "'" are case-ignorable, so
    # a sigma before them is final only when no cased letter follows; "-" and ":" end the word.
    assert checked_basic("ΟΔΟΣ.", True) == ["οδος", "."]
    assert checked_basic("ΑΣ.Α", True) == ["ασ", ".", "α"]
    assert checked_basic("ΑΣ'Α", True) == ["ασ", "'", "α"]
    assert checked_basic("ΑΣ-Α", True) == ["ας", "-", "α"]
    assert checked_basic("Σ.Σ", True) == ["σ", ".", "ς"]
    assert rust_words("ΑΣ-Α Σ.Σ", True) == ["ασ", "-", "α", "σ", ".", "σ"]


def test_word_of_150_characters_is_split_not_unknown():
    word = ("supercalifragilistic" * 8)[:150]
    for do_lower_case in (True, False):
        tokens, _ = checked(word, do_lower_case)
        assert "[UNK]" not in tokens and len(tokens) > 1
    assert rust_tokens(word, True) == ["[UNK]"]  # tokenizers' default gives up at 100 chars
    assert rust_tokens(word, True, max_input_chars_per_word=200) == checked(word, True)[0]


@pytest.mark.parametrize("do_lower_case", MODES)
def test_word_of_200_characters_is_split_and_201_is_unknown(do_lower_case):
    assert "[UNK]" not in checked("a" * 200, do_lower_case)[0]
    assert checked("a" * 201, do_lower_case)[0] == ["[UNK]"]
    assert checked("a" * 201 + " b", do_lower_case)[0] == ["[UNK]", "b"]
    # Combining marks count until they are stripped: 200 letters + 1 accent is too long cased.
    accented = "a" * 199 + "\u00e9"
    assert "[UNK]" not in checked(accented, True)[0]
    decomposed = "a" * 200 + "\u0301"
    assert "[UNK]" not in checked(decomposed, True)[0]
    assert checked(decomposed, False)[0] == ["[UNK]"]


@pytest.mark.parametrize("code_point", [0x2B820, 0x2B8FF, 0x2B91F])
def test_cjk_extension_e_start_is_cjk_for_google(code_point):
    char = chr(code_point)
    assert unicodedata.category(char) == "Lo"
    for do_lower_case in (True, False):
        assert checked_basic(f"a{char}b", do_lower_case) == ["a", char, "b"]
    assert rust_words(f"a{char}b", True) == [f"a{char}b"]


@pytest.mark.parametrize(
    "char",
    [
        *("\u4e00", "\u9fff", "\u3400", "\U00020000", "\U0002a6df", "\U0002b920", "\U0002ceaf"),
        *("\uf900", "\ufaff", "\U0002f800", "\U0002fa1f"),
    ],
)
def test_cjk_range_edges(char):
    assert checked_basic(f"x{char}y", True) == ["x", unicodedata.normalize("NFD", char), "y"]
    assert checked_basic(f"x{char}y", False) == ["x", char, "y"]


@pytest.mark.parametrize(
    "char", ["\u3041", "\u30a2", "\uac00", "\u1100", "\U0002ceb0", "\U0002a6e0", "\u4dc0"]
)
def test_not_cjk_for_google(char):
    # Hiragana, Katakana, Hangul and the gaps between Google's ranges stay inside words.
    assert checked_basic(f"x{char}y", False) == [f"x{char}y"]


@pytest.mark.parametrize(
    ("char", "category"), [("\ue000", "Co"), ("\U0010fffd", "Co"), ("\u0378", "Cn")]
)
def test_private_use_and_unassigned_characters_are_kept(char, category):
    assert unicodedata.category(char) == category
    for do_lower_case in (True, False):
        assert checked_basic(f"a{char}b", do_lower_case) == [f"a{char}b"]
        assert checked(f"a{char}b", do_lower_case)[0] == ["[UNK]"]
    if category == "Co":
        assert rust_words(f"a{char}b", True) == ["ab"]  # tokenizers deletes every C* category


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\u200e", "\u00ad", "\ufeff", "\u2060"])
def test_format_characters_are_dropped(char):
    assert unicodedata.category(char) == "Cf"
    for do_lower_case in (True, False):
        assert checked_basic(f"wo{char}rd", do_lower_case) == ["word"]


@pytest.mark.parametrize("char", ["\x00", "\ufffd", "\x7f", "\x0b", "\x0c", "\x1c", "\x85"])
def test_nul_replacement_and_controls_are_dropped_even_when_they_are_space(char):
    # \x0b, \x0c, \x1c and \x85 are str.isspace() but Cc: Google drops them before splitting.
    for do_lower_case in (True, False):
        assert checked_basic(f"hello{char}world", do_lower_case) == ["helloworld"]


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\u00a0", "\u3000", "\u2003", "\u202f", "\t", "\r", "\n"]
)
def test_unicode_separators_split_words(char):
    # Zl and Zp are not Google's "whitespace", but str.split() still splits on them.
    for do_lower_case in (True, False):
        assert checked_basic(f"hello{char}world", do_lower_case) == ["hello", "world"]


def test_combining_marks_stripped_only_when_lowercasing():
    assert checked_basic("cafe\u0301 na\u00efve", True) == ["cafe", "naive"]
    assert checked_basic("cafe\u0301 na\u00efve", False) == ["cafe\u0301", "na\u00efve"]
    assert checked_basic("a \u0301 b", True) == ["a", "b"]  # a word of marks disappears
    assert checked_basic("a \u0301 b", False) == ["a", "\u0301", "b"]
    assert checked_basic("\u0130stanbul", True) == ["istanbul"]


def test_nfd_can_create_punctuation():
    # U+1FEF GREEK VARIA decomposes to "`", which Google counts as punctuation.
    assert checked_basic("a\u1fefb", True) == ["a", "`", "b"]
    assert checked_basic("a\u1fefb", False) == ["a\u1fefb"]
    assert checked_basic("a\u037eb", False) == ["a", "\u037e", "b"]


@pytest.mark.parametrize("char", ["$", "+", "^", "`", "<", "=", ">", "|", "~"])
def test_ascii_symbols_are_punctuation(char):
    assert unicodedata.category(char).startswith("S")
    assert checked_basic(f"a{char}b", False) == ["a", char, "b"]


def test_non_ascii_symbols_are_not_punctuation():
    assert checked_basic("a\u20acb a\u00a9b", False) == ["a\u20acb", "a\u00a9b"]
    assert checked_basic("a\u00bfb a\u3001b", False) == ["a", "\u00bf", "b", "a", "\u3001", "b"]


# --------------------------------------------------------------------------------------------
# Vocabulary parsing
# --------------------------------------------------------------------------------------------


def test_vocab_lines_are_stripped_on_both_sides(tmp_path):
    vocab = parse_vocab(b"[UNK]\n  hello \t\nworld\r\n")
    assert vocab.tokens == ("[UNK]", "hello", "world")
    assert vocab.ids == {"[UNK]": 0, "hello": 1, "world": 2}
    assert checked("Hello World", True, vocab) == (["hello", "world"], [1, 2])
    wordpiece = pytest.importorskip("tokenizers.models").WordPiece
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[UNK]\n  hello \t\nworld\r\n")
    assert "hello" not in wordpiece.read_file(str(path))  # tokenizers keeps leading spaces


def test_vocab_line_with_invalid_utf8_is_decoded_ignoring_errors():
    vocab = parse_vocab(b"[UNK]\nab\xffc\nd\n")
    assert vocab.tokens == ("[UNK]", "abc", "d")
    assert vocab.ids["abc"] == 1
    assert len(vocab.warnings) == 1
    assert "line 2" in vocab.warnings[0] and "UTF-8" in vocab.warnings[0]


def test_vocab_without_trailing_newline_and_with_crlf():
    assert parse_vocab(b"[UNK]\nx").tokens == ("[UNK]", "x")
    assert parse_vocab(b"[UNK]\r\nx\r\n").tokens == ("[UNK]", "x")


def test_vocab_tokens_repeated_after_stripping_keep_the_later_id():
    vocab = parse_vocab(b"[UNK]\nfoo\n foo\n")
    assert vocab.ids["foo"] == 2
    assert len(vocab.tokens) == 3
    assert any("repeat" in warning for warning in vocab.warnings)


@pytest.mark.parametrize("data", [b"", b"\n"])
def test_empty_vocab_is_an_error(data):
    with pytest.raises(VocabError):
        parse_vocab(data)


def test_vocab_line_repeated_verbatim_is_an_error():
    with pytest.raises(VocabError, match="repeats line 2"):
        parse_vocab(b"[UNK]\nfoo\nbar\nfoo\n")


def test_vocab_without_unk_is_an_error():
    with pytest.raises(VocabError):
        parse_vocab(b"foo\nbar\n")


def test_bundled_vocab_is_googles_uncased_vocab():
    vocab = bundled_vocab()
    assert len(vocab) == 30522
    assert vocab.warnings == ()
    assert [vocab.ids[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [
        0,
        100,
        101,
        102,
        103,
    ]
    assert not vocab.looks_cased


# --------------------------------------------------------------------------------------------
# Truncation and model inputs
# --------------------------------------------------------------------------------------------


def test_truncate_seq_pair_pops_from_the_longer_side():
    a, b = [1, 2, 3, 4, 5], [6, 7]
    assert truncate_seq_pair(a, b, 4) == 3
    assert (a, b) == ([1, 2], [6, 7])


def test_truncate_seq_pair_ties_pop_from_b():
    a, b = [1, 2, 3], [4, 5, 6]
    assert truncate_seq_pair(a, b, 5) == 1
    assert (a, b) == ([1, 2, 3], [4, 5])
    assert truncate_seq_pair(a, b, 3) == 2
    assert (a, b) == ([1, 2], [4])


def test_truncate_seq_pair_noop_when_it_fits():
    a, b = [1], [2]
    assert truncate_seq_pair(a, b, 2) == 0
    assert (a, b) == ([1], [2])


def test_build_inputs_pair_padded():
    vocab = bundled_vocab()
    tokens_a, ids_a = checked("John Smith", True)
    tokens_b, ids_b = checked("hello world", True)
    encoding = build_inputs(vocab, tokens_a, ids_a, tokens_b, ids_b, max_seq_length=10)
    assert encoding.tokens == ["[CLS]", "john", "smith", "[SEP]", "hello", "world", "[SEP]"]
    assert encoding.input_ids == [101, 2198, 3044, 102, *ids_b, 102, 0, 0, 0]
    assert encoding.segment_ids == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert encoding.input_mask == [1] * 7 + [0] * 3
    assert encoding.truncated == 0


def test_build_inputs_pair_truncated_ties_from_b():
    vocab = bundled_vocab()
    tokens_a, ids_a = checked("John Smith", True)
    tokens_b, ids_b = checked("hello world", True)
    encoding = build_inputs(vocab, tokens_a, ids_a, tokens_b, ids_b, max_seq_length=6)
    assert encoding.tokens == ["[CLS]", "john", "smith", "[SEP]", "hello", "[SEP]"]
    assert encoding.input_ids == [101, 2198, 3044, 102, ids_b[0], 102]
    assert encoding.segment_ids == [0, 0, 0, 0, 1, 1]
    assert encoding.truncated == 1
    assert (tokens_a, tokens_b) == (["john", "smith"], ["hello", "world"])  # inputs untouched


def test_build_inputs_single_truncated_and_padded():
    vocab = bundled_vocab()
    tokens, ids = checked("John Smith", True)
    encoding = build_inputs(vocab, tokens, ids, max_seq_length=3)
    assert encoding.tokens == ["[CLS]", "john", "[SEP]"]
    assert encoding.input_ids == [101, 2198, 102]
    assert encoding.truncated == 1
    encoding = build_inputs(vocab, tokens, ids, max_seq_length=6)
    assert encoding.input_ids == [101, 2198, 3044, 102, 0, 0]
    assert encoding.input_mask == [1, 1, 1, 1, 0, 0]
    assert encoding.segment_ids == [0] * 6


# --------------------------------------------------------------------------------------------
# Differential run over real multilingual text
# --------------------------------------------------------------------------------------------

REQUIRED_SCRIPTS = ("Latin", "Greek", "Cyrillic", "Arabic", "Devanagari", "Thai", "CJK", "Hangul")
MIN_LINES = 100_000


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    pytest.importorskip("babel")
    pytest.importorskip("faker")
    from multilingual_corpus import multilingual_lines

    return multilingual_lines(MIN_LINES)


def test_corpus_covers_the_scripts_that_matter(corpus):
    from multilingual_corpus import scripts_present

    assert len(corpus) >= MIN_LINES
    counts = scripts_present(corpus)
    thin = {script: counts[script] for script in REQUIRED_SCRIPTS if counts[script] < 500}
    assert not thin, f"the corpus barely covers {thin}"
    # The characters behind Google's edge cases really occur in it.
    text = "\n".join(corpus)
    assert "ς" in text.lower() and "Σ" in text
    decomposed = set(unicodedata.normalize("NFD", text))
    assert any(unicodedata.category(char) == "Mn" for char in decomposed)
    assert any(unicodedata.category(char) == "Cf" for char in set(text))


def _differences(lines: list[str], do_lower_case: bool) -> list[str]:
    tokenizer = Tokenizer(bundled_vocab(), do_lower_case=do_lower_case)
    oracle = ReferenceTokenizer(bundled_vocab().ids, do_lower_case=do_lower_case)
    report = []
    for number, line in enumerate(lines):
        tokens, ids = tokenizer.tokenize_with_ids(line)
        expected = oracle.tokenize(line)
        if tokens != expected or ids != oracle.convert_tokens_to_ids(expected):
            report.append(f"line {number}: {line!r}\n  fast      {tokens}\n  reference {expected}")
            if len(report) >= 10:
                break
    return report


@pytest.mark.parametrize("do_lower_case", MODES)
def test_fast_equals_reference_on_real_multilingual_text(corpus, do_lower_case):
    started = time.perf_counter()
    report = _differences(corpus, do_lower_case)
    assert not report, "fast path and reference differ:\n" + "\n".join(report)
    assert time.perf_counter() - started < 300  # a guard against pathological slowdowns


# --------------------------------------------------------------------------------------------
# Property tests: arbitrary Unicode
# --------------------------------------------------------------------------------------------

INTERESTING = (
    # whitespace Google maps or str.split() honours, and controls that are isspace() too
    list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f")
    + list("\u205f\u3000")
    # controls, format characters, NUL and the replacement character
    + list("\x00\x01\x7f\x9f\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u2060\ufeff\ufffd")
    + ["\U000e0001", "\U000e0041"]
    # private use, unassigned, noncharacters
    + ["\ue000", "\uf8ff", "\U000f0000", "\U0010fffd", "\u0378", "\u0380", "\ufdd0", "\uffff"]
    # combining marks (Mn) and marks of other categories (Mc, Me)
    + list("\u0300\u0301\u0308\u0327\u0345\u0591\u064b\u093c\u0e31\u0e48\u302a\u3099")
    + list("\u0903\u20dd\u0488")
    # Greek sigma in all its forms, and other case oddities
    + list("ΣσςΑΑΟΔΣΆΐΰ\u1fef\u037e\u0387")
    + list("İıẞßǅǄǆﬁΩKÅ\u2126\u212a\u212b")
    # punctuation, ASCII symbols Google counts as punctuation, symbols it does not
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‹›–—‘’“”„†‰‽、。「」﹏＂！")
    + list("€©®°±×÷¤¦§¨¬¯´¸")
    # CJK range edges and what sits just outside them, kana, Hangul
    + list("\u4e00\u9fff\u3400\u4dbf\u4dc0\uf900\ufaff\u3041\u30a2\uac00\u1100\u3131")
    + ["\U00020000", "\U0002a6df", "\U0002a6e0", "\U0002a700", "\U0002b73f", "\U0002b740"]
    + ["\U0002b81f", "\U0002b820", "\U0002b91f", "\U0002b920", "\U0002ceaf", "\U0002ceb0"]
    + ["\U0002f800", "\U0002fa1f", "\U0002fa20"]
)

ALL_CATEGORY_CHARS = st.characters(
    categories=[
        "Cc",
        "Cf",
        "Co",
        "Cn",
        "Mn",
        "Mc",
        "Me",
        "Zs",
        "Zl",
        "Zp",
        "Pc",
        "Pd",
        "Ps",
        "Pe",
        "Pi",
        "Pf",
        "Po",
        "Sk",
        "Lu",
        "Ll",
        "Lt",
        "Lo",
    ]
)


def _vocab_fragments() -> list[str]:
    tokens = [t.removeprefix("##") for t in bundled_vocab().tokens if not t.startswith("[")]
    return sorted({t for t in tokens if t})[::7]


ANY_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),
    st.text(ALL_CATEGORY_CHARS, max_size=40),
    st.text(st.sampled_from(INTERESTING), max_size=40),
    st.lists(
        st.one_of(
            st.sampled_from(INTERESTING),
            st.sampled_from(_vocab_fragments()),
            st.sampled_from(["a" * 199, "a" * 200, "Σ" * 201, "e\u0301" * 100]),
            ALL_CATEGORY_CHARS,
        ),
        max_size=30,
    ).map("".join),
)


def _assert_same(text: str, do_lower_case: bool) -> None:
    tokens, ids = fast(do_lower_case).tokenize_with_ids(text)
    oracle = reference(do_lower_case)
    expected = oracle.tokenize(text)
    assert tokens == expected, f"{text!r}: fast {tokens} != reference {expected}"
    assert ids == oracle.convert_tokens_to_ids(expected)
    assert basic_tokenize(text, do_lower_case) == oracle.basic_tokenize(text)


PIECE_ALPHABET = "ab#é"
PIECES = st.text(PIECE_ALPHABET, min_size=1, max_size=6)


@settings(max_examples=1000, deadline=None)
@given(
    entries=st.lists(st.one_of(PIECES, PIECES.map("##".__add__)), unique=True, max_size=30),
    words=st.lists(st.text(PIECE_ALPHABET, min_size=1, max_size=14), min_size=1, max_size=8),
)
def test_wordpiece_greedy_longest_match_on_random_vocabs(entries, words):
    vocab = parse_vocab("\n".join(["[UNK]", *entries]).encode("utf-8"))
    tokenizer = Tokenizer(vocab, do_lower_case=False)
    oracle = ReferenceTokenizer(vocab.ids, do_lower_case=False)
    for word in words:
        pieces, ids = tokenizer.wordpiece(word)
        expected = oracle.wordpiece(word)
        assert list(pieces) == expected, f"{word!r} with {entries}"
        assert list(ids) == oracle.convert_tokens_to_ids(expected)


@pytest.mark.parametrize("do_lower_case", MODES)
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_fast_equals_reference_on_arbitrary_unicode(do_lower_case, text):
    _assert_same(text, do_lower_case)


@pytest.mark.slow(reason="a long fuzzing run")
@pytest.mark.parametrize("do_lower_case", MODES)
@settings(max_examples=50_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=ANY_TEXT)
def test_fast_equals_reference_on_arbitrary_unicode_long_run(do_lower_case, text):
    _assert_same(text, do_lower_case)


@pytest.mark.parametrize("text_b", ["\u200b", "", " \t", "\u200b\u200d"])
def test_a_second_text_that_tokenizes_to_nothing_makes_a_single_text_example(text_b):
    """Google's convert_single_example tests `if tokens_b:`: [CLS] A [SEP], truncated as one
    text (max_seq_length - 2), never [CLS] A [SEP] [SEP]."""
    from bertctl.tokenization import build_inputs

    tokenizer = Tokenizer(bundled_vocab(), True)
    tokens_a, ids_a = tokenizer.tokenize_with_ids("the quick brown fox jumps")
    tokens_b, ids_b = tokenizer.tokenize_with_ids(text_b)
    assert tokens_b == []
    pair = build_inputs(tokenizer.vocab, tokens_a, ids_a, tokens_b, ids_b, 6)
    single = build_inputs(tokenizer.vocab, tokens_a, ids_a, None, None, 6)
    assert pair == single
    assert pair.input_ids[:6] == [101, 1996, 4248, 2829, 4419, 102]  # 4 of 5 words: 6 - 2 kept
    assert pair.segment_ids == [0] * 6
