"""A slow, literal rendering of Google's BERT tokenizer as REFERENCE.md §4 describes it.

This module is the oracle of the differential tests and the pure-Python baseline of
bench/bench_tokenize.py. It is written for obviousness, not speed: every step walks the text one
character at a time and asks `unicodedata` about that character, in the order the reference gives.
It deliberately shares no code and no tables with `bertctl.tokenization`, so a mistake in the fast
path cannot hide behind the same mistake here.

BasicTokenizer, step by step:
  1. clean: drop U+0000, U+FFFD and control characters (category Cc or Cf, except tab, newline and
     carriage return); turn whitespace (space, tab, newline, carriage return, category Zs) into a
     plain space; keep everything else (private use, unassigned, ...) as it is;
  2. put a space on each side of every CJK ideograph (the eight ranges below, not Hangul, Hiragana
     or Katakana);
  3. split on whitespace (Python's `str.split()` with no argument, so U+2028 and friends split too);
  4. per word, when lowercasing: `str.lower()`, then NFD, then drop category Mn; when cased,
     nothing at all;
  5. per word, every punctuation character becomes a token of its own (ASCII 33-47, 58-64, 91-96,
     123-126, or any category starting with "P"); finally empty pieces are dropped.
WordPiece, per word: longer than 200 characters -> "[UNK]"; otherwise greedy longest match from
the left, pieces after the first prefixed with "##"; if some position matches nothing, the whole
word is one "[UNK]".
"""

from __future__ import annotations

import unicodedata

UNK_TOKEN = "[UNK]"
MAX_INPUT_CHARS_PER_WORD = 200

# Inclusive code-point ranges that REFERENCE §4 calls CJK ideographs.
CJK_IDEOGRAPH_RANGES = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]

# Inclusive ASCII ranges that count as punctuation even where Unicode says "symbol".
ASCII_PUNCTUATION_RANGES = [(33, 47), (58, 64), (91, 96), (123, 126)]


def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or any character of category Zs."""
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """Category Cc or Cf, except tab, newline and carriage return (those are whitespace)."""
    if char == "\t" or char == "\n" or char == "\r":
        return False
    category = unicodedata.category(char)
    return category == "Cc" or category == "Cf"


def is_punctuation(char: str) -> bool:
    """One of the four ASCII ranges, or any category that starts with "P"."""
    code_point = ord(char)
    for low, high in ASCII_PUNCTUATION_RANGES:
        if low <= code_point <= high:
            return True
    return unicodedata.category(char).startswith("P")


def is_cjk_ideograph(char: str) -> bool:
    """True inside one of the eight CJK ranges."""
    code_point = ord(char)
    return any(low <= code_point <= high for low, high in CJK_IDEOGRAPH_RANGES)


def clean_text(text: str) -> str:
    """Step 1: drop NUL, U+FFFD and controls; map every whitespace character to a space."""
    output = []
    for char in text:
        code_point = ord(char)
        if code_point == 0 or code_point == 0xFFFD or is_control(char):
            continue
        if is_whitespace(char):
            output.append(" ")
        else:
            output.append(char)
    return "".join(output)


def space_out_cjk(text: str) -> str:
    """Step 2: surround every CJK ideograph with spaces."""
    output = []
    for char in text:
        if is_cjk_ideograph(char):
            output.append(" ")
            output.append(char)
            output.append(" ")
        else:
            output.append(char)
    return "".join(output)


def split_on_whitespace(text: str) -> list[str]:
    """Step 3: Python's `str.split()` (any `str.isspace()` character, runs collapse)."""
    text = text.strip()
    if not text:
        return []
    return text.split()


def lowercase_and_strip_accents(word: str) -> str:
    """Step 4: `str.lower()`, NFD, then drop every character of category Mn."""
    word = word.lower()
    word = unicodedata.normalize("NFD", word)
    output = []
    for char in word:
        if unicodedata.category(char) == "Mn":
            continue
        output.append(char)
    return "".join(output)


def split_on_punctuation(word: str) -> list[str]:
    """Step 5: each punctuation character alone; the runs between them stay together."""
    pieces: list[list[str]] = []
    start_new_piece = True
    for char in word:
        if is_punctuation(char):
            pieces.append([char])
            start_new_piece = True
        else:
            if start_new_piece:
                pieces.append([])
            start_new_piece = False
            pieces[-1].append(char)
    return ["".join(piece) for piece in pieces]


class ReferenceTokenizer:
    """Google's FullTokenizer (BasicTokenizer then WordPiece), one character at a time.

    Args:
        vocab_tokens_to_ids: token -> id, as Google's `load_vocab` builds it.
        do_lower_case: True for uncased models.
    """

    def __init__(self, vocab_tokens_to_ids: dict[str, int], do_lower_case: bool) -> None:
        self.vocab = vocab_tokens_to_ids
        self.do_lower_case = do_lower_case

    def basic_tokenize(self, text: str) -> list[str]:
        """Steps 1-5: the words and punctuation marks WordPiece will see."""
        text = clean_text(text)
        text = space_out_cjk(text)
        split_tokens: list[str] = []
        for word in split_on_whitespace(text):
            if self.do_lower_case:
                word = lowercase_and_strip_accents(word)
            split_tokens.extend(split_on_punctuation(word))
        # Google joins the pieces with spaces and splits once more: empty pieces disappear.
        return split_on_whitespace(" ".join(split_tokens))

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first WordPiece of one word."""
        chars = list(word)
        if len(chars) > MAX_INPUT_CHARS_PER_WORD:
            return [UNK_TOKEN]
        pieces: list[str] = []
        start = 0
        while start < len(chars):
            end = len(chars)
            found = None
            while start < end:
                candidate = "".join(chars[start:end])
                if start > 0:
                    candidate = "##" + candidate
                if candidate in self.vocab:
                    found = candidate
                    break
                end -= 1
            if found is None:
                return [UNK_TOKEN]
            pieces.append(found)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of a text, without special tokens."""
        output: list[str] = []
        for word in self.basic_tokenize(text):
            for piece in split_on_whitespace(word):
                output.extend(self.wordpiece(piece))
        return output

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        """Ids of tokens (a KeyError for a token outside the vocab, as in Google's code)."""
        return [self.vocab[token] for token in tokens]
