"""Google's BERT tokenizer (`tokenization.py` of google-research/bert), exactly, and fast.

Google's BasicTokenizer walks every character in Python and asks `unicodedata` about it. Here the
same steps run as whole-string operations that CPython does in C: one `str.translate` to drop
control characters and map whitespace (skipped when a regex search finds none), one regex to
space out CJK ideographs (only when a search finds one), `str.lower` and
`unicodedata.normalize("NFD")` on the whole line, then a second `translate` that drops combining
marks (category Mn) and puts spaces around punctuation, and `str.split()`. Pure-ASCII lines take a
shorter route with ASCII-only tables. WordPiece finds Google's greedy longest match by growing each
candidate while it is still the prefix of some vocab entry (instead of trying every shorter end
from the end of the word), and remembers each word it has seen, so on real text most words cost
a dictionary lookup.

Why not the Rust `tokenizers` pipeline: it differs from Google in edge cases (Greek final sigma,
100-char words, the CJK range, private-use characters, special tokens matched in raw text, vocab
`rstrip`), and it carries its own Unicode tables where Google uses Python's `unicodedata`.

Why whole-line lowercasing equals Google's per-word lowercasing: words are separated by whitespace,
and no whitespace character is "cased" or "case-ignorable", so the only context-dependent mapping
(final sigma) never looks across a word boundary. The differential tests check this on real text.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bertctl.errors import UsageError, VocabError

UNK, CLS, SEP, MASK, PAD = "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"

# Google's WordPiece gives up on words longer than this (counted in code points).
MAX_INPUT_CHARS_PER_WORD = 200

# The longest sequence build_inputs pads to; as `pretrain prepare` allows.
MAX_SEQ_LENGTH = 32767

# Google's `_is_chinese_char`: CJK Unified Ideographs and extensions, compatibility ideographs.
# Hangul, Hiragana and Katakana are deliberately absent.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# ASCII characters Google counts as punctuation even where Unicode does not ("$", "+", "^", "`").
ASCII_PUNCT_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# The largest vocab.txt read: Google's largest (multilingual, 119,547 tokens) is under 1 MB. The
# bounds keep a hostile vocab from costing more than a few hundred MB of memory to parse (each
# line becomes a bytes, a str and set and dict entries), and are also the bound on a vocab.txt
# inside a zip (see archive.member_limit).
MAX_VOCAB_BYTES = 16 << 20
MAX_VOCAB_TOKENS = 1 << 20

# A word cache that grows without bound would break constant-memory streaming on huge corpora.
_WORD_CACHE_LIMIT = 1 << 19

# What the WordPiece prefix table returns for a string that begins no vocab entry.
_NOT_A_PREFIX = object()


# --------------------------------------------------------------------------------------------
# Character tables, derived from this Python's `unicodedata` exactly as Google's checks do.
# --------------------------------------------------------------------------------------------


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """A regex character-class body for inclusive code-point ranges."""
    parts = []
    for lo, hi in ranges:
        parts.append(
            re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        )
    return "".join(parts)


def _ranges(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse sorted code points into inclusive ranges."""
    out: list[tuple[int, int]] = []
    for cp in codepoints:
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def _word_regex(punct_ranges: Iterable[tuple[int, int]]) -> re.Pattern[str]:
    """Each punctuation character alone, or a run of characters that are neither space nor punct."""
    punct = _char_class(punct_ranges)
    return re.compile(f"[{punct}]|[^\\s{punct}]+")


@dataclass(frozen=True)
class _AsciiTables:
    """Everything needed for pure-ASCII text, built without scanning Unicode."""

    clean: dict[int, str | None]
    words: re.Pattern[str]


@lru_cache(maxsize=1)
def _ascii_tables() -> _AsciiTables:
    clean: dict[int, str | None] = {}
    for cp in range(128):
        ch = chr(cp)
        if ch in "\t\n\r":
            clean[cp] = " "
        elif unicodedata.category(ch) in ("Cc", "Cf") or cp == 0:
            clean[cp] = None
    return _AsciiTables(clean=clean, words=_word_regex(ASCII_PUNCT_RANGES))


@dataclass(frozen=True)
class _UnicodeTables:
    """Translate tables and regexes for any text; built once per process (about 0.4 s).

    Attributes:
        clean: step 1 (drop NUL, U+FFFD, Cc and Cf except tab/newline/CR; whitespace to " ").
        needs_cleaning: finds any character `clean` would change.
        cjk: one CJK ideograph (step 2 puts spaces around each).
        split_cased: every punctuation character to itself with a space on each side (step 5).
        split_uncased: the same, and every combining mark (category Mn) deleted (steps 4 and 5).
    """

    clean: dict[int, str | None]
    needs_cleaning: re.Pattern[str]
    cjk: re.Pattern[str]
    split_cased: dict[int, str]
    split_uncased: dict[int, str | None]


@lru_cache(maxsize=1)
def _unicode_tables() -> _UnicodeTables:
    # `map` over one string of every code point keeps the scan in C.
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    categories = list(map(unicodedata.category, everything))
    clean: dict[int, str | None] = {0: None, 0xFFFD: None}
    marks: dict[int, None] = {}
    punct: list[int] = []
    ascii_punct = {cp for lo, hi in ASCII_PUNCT_RANGES for cp in range(lo, hi + 1)}
    for cp, cat in enumerate(categories):
        if cat in ("Cc", "Cf"):
            clean[cp] = None  # _is_control; \t \n \r are overridden below
        elif cat == "Zs":
            clean[cp] = " "  # _is_whitespace
        elif cat == "Mn":
            marks[cp] = None
        if cat.startswith("P") or cp in ascii_punct:
            punct.append(cp)
    for ch in "\t\n\r":
        clean[ord(ch)] = " "
    needs_cleaning = re.compile(f"[{_char_class(_ranges(sorted(clean)))}]")
    cjk = re.compile(f"[{_char_class(CJK_RANGES)}]")
    # Punctuation and marks are disjoint categories, and no punctuation character is whitespace,
    # so spacing out punctuation and then `str.split()` gives exactly the words and punctuation
    # marks that Google's split on whitespace then on punctuation gives.
    split_cased = {cp: f" {chr(cp)} " for cp in punct}
    split_uncased: dict[int, str | None] = {**split_cased, **marks}
    return _UnicodeTables(
        clean=clean,
        needs_cleaning=needs_cleaning,
        cjk=cjk,
        split_cased=split_cased,
        split_uncased=split_uncased,
    )


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """A WordPiece vocabulary: line i of vocab.txt (after `strip()`) has id i, as in Google's code.

    Attributes:
        tokens: id -> token.
        ids: token -> id (where a token appears twice after stripping, the later line wins,
            as in Google's `load_vocab`).
        source: where it was read from, for messages.
        warnings: things Google tolerates silently that the user should still hear about.
    """

    tokens: tuple[str, ...]
    ids: dict[str, int]
    source: str = "vocab"
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)

    def id_of(self, token: str) -> int:
        """The id of a token that must be in the vocab (special tokens are looked up, never fixed)."""
        try:
            return self.ids[token]
        except KeyError:
            raise VocabError(
                f"{self.source} has no {token!r} token",
                "use the vocab.txt that came with the model",
            ) from None

    @property
    def looks_cased(self) -> bool:
        """True when regular tokens hold upper-case letters (an uncased vocab has none)."""
        return any(
            t != t.lower() for t in self.tokens if not (t.startswith("[") and t.endswith("]"))
        )


def parse_vocab(data: bytes, source: str = "vocab.txt") -> Vocab:
    """Parse vocab.txt bytes exactly as Google's `load_vocab` does.

    Lines are split on "\\n", decoded as UTF-8 dropping undecodable bytes, and `strip()`ped.

    Raises:
        VocabError: for an empty vocab, a line repeated verbatim (a corrupted file), or no [UNK].
    """
    _check_vocab_size(data, source)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start a new token
    if not lines:
        raise VocabError(f"{source} is empty", "pass the vocab.txt that came with the model")
    warnings: list[str] = []
    if len(set(lines)) != len(lines):
        _raise_first_repeat(lines, source)
    undecodable: list[int] = []
    try:
        # "\n" never occurs inside a multi-byte UTF-8 sequence, so decoding the lines one by one
        # or all at once is the same; all at once is what makes a 120k-line vocab load fast.
        texts = b"\n".join(lines).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        texts = []
        for index, raw in enumerate(lines):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("utf-8", "ignore"))
                undecodable.append(index + 1)
    tokens = [t.strip() for t in texts]
    ids = {token: index for index, token in enumerate(tokens)}  # later lines win, as Google's
    strip_dupes: list[tuple[int, str]] = []
    if len(ids) != len(tokens):
        seen: set[str] = set()
        for index, token in enumerate(tokens):
            if token in seen:
                strip_dupes.append((index + 1, token))
            seen.add(token)
    if undecodable:
        warnings.append(
            f"{source}: {len(undecodable)} line(s) hold bytes that are not UTF-8 (first: line "
            f"{undecodable[0]}); dropped those bytes as Google's tokenizer does"
        )
    if strip_dupes:
        line, token = strip_dupes[0]
        warnings.append(
            f"{source}: {len(strip_dupes)} token(s) repeat once surrounding whitespace is stripped "
            f"(first: line {line}, {token!r}); the later line's id wins, as in Google's load_vocab"
        )
    if UNK not in ids:
        raise VocabError(f"{source} has no {UNK} token", "pass a BERT vocab.txt (it lists [UNK])")
    return Vocab(tuple(tokens), ids, source, tuple(warnings))


def _check_vocab_size(data: bytes, source: str) -> None:
    """Refuse a vocab past MAX_VOCAB_BYTES or MAX_VOCAB_TOKENS before splitting it."""
    if len(data) > MAX_VOCAB_BYTES:
        raise VocabError(
            f"{source} is larger than {MAX_VOCAB_BYTES >> 20} MiB, far more than a vocab holds "
            "(Google's largest is under 1 MB)",
            "pass the vocab.txt that came with the model",
        )
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if lines > MAX_VOCAB_TOKENS:
        raise VocabError(
            f"{source} has {lines:,} lines, more than {MAX_VOCAB_TOKENS:,} tokens, far more "
            "than a vocab holds (Google's largest has 119,547)",
            "pass the vocab.txt that came with the model",
        )


def _raise_first_repeat(lines: list[bytes], source: str) -> None:
    first_line_of: dict[bytes, int] = {}
    for index, raw in enumerate(lines):
        seen = first_line_of.setdefault(raw, index)
        if seen != index:
            raise VocabError(
                f"{source}:{index + 1} repeats line {seen + 1} "
                f"({raw.decode('utf-8', 'replace').strip()!r})",
                "a vocab must list each token once; re-download or restore the original vocab.txt",
            )


def load_vocab(path: str | Path) -> Vocab:
    """Read a vocab.txt from disk (see `parse_vocab`)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            # One byte past the bound tells a vocab that is too large, without reading it all.
            data = handle.read(MAX_VOCAB_BYTES + 1)
    except FileNotFoundError:
        raise VocabError(f"{path}: no such file", "pass the vocab.txt of the model") from None
    except IsADirectoryError:
        raise VocabError(f"{path} is a folder", "pass the vocab.txt file inside it") from None
    except OSError as exc:
        raise VocabError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_vocab(data, source=str(path))


def bundled_vocab_path() -> Path:
    """The uncased release vocab shipped with bertctl (byte-identical to Google's)."""
    return Path(__file__).resolve().parent / "data" / "uncased_vocab.txt"


@lru_cache(maxsize=1)
def bundled_vocab() -> Vocab:
    """The uncased release vocab (30,522 tokens), parsed once per process."""
    return load_vocab(bundled_vocab_path())


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """Google's BasicTokenizer: clean, space out CJK, (lowercase, strip accents), split punctuation.

    >>> basic_tokenize(" \\tHeLLo!how  \\n Are yoU?  ", True)
    ['hello', '!', 'how', 'are', 'you', '?']
    """
    if text.isascii():
        ascii_tables = _ascii_tables()
        text = text.translate(ascii_tables.clean)
        if do_lower_case:
            text = text.lower()
        return ascii_tables.words.findall(text)
    tables = _unicode_tables()
    if tables.needs_cleaning.search(text):
        text = text.translate(tables.clean)
    if tables.cjk.search(text):
        text = tables.cjk.sub(r" \g<0> ", text)
    if do_lower_case:
        # On the whole line, as Google does per word: see the module docstring for why.
        text = unicodedata.normalize("NFD", text.lower())
        return text.translate(tables.split_uncased).split()
    return text.translate(tables.split_cased).split()


class Tokenizer:
    """Google's FullTokenizer: BasicTokenizer then WordPiece, returning tokens and their ids.

    Args:
        vocab: the model's vocabulary.
        do_lower_case: True for uncased models (lowercase and strip accents).

    >>> tok = Tokenizer(bundled_vocab(), do_lower_case=True)
    >>> tok.tokenize("John Johanson's,")
    ['john', 'johan', '##son', "'", 's', ',']
    """

    def __init__(self, vocab: Vocab, do_lower_case: bool = True) -> None:
        self.vocab = vocab
        self.do_lower_case = do_lower_case
        self.unk_id = vocab.id_of(UNK)
        self._cache: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        # Every prefix of every vocab entry, mapped to the entry's id where the prefix is an
        # entry itself and to None otherwise (about 65k keys for a BERT vocab); and every
        # character that occurs in any entry: a word holding another character has a position
        # that no piece covers, so it is one [UNK].
        prefixes: dict[str, int | None] = {}
        for token in vocab.ids:
            for end in range(1, len(token)):
                prefixes.setdefault(token[:end], None)
        prefixes.update(vocab.ids)
        self._prefixes = prefixes
        self._chars = frozenset("".join(vocab.ids))

    def wordpiece(self, word: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Greedy longest-match-first WordPiece of one word: (pieces, ids).

        A word longer than 200 characters, or one with any position that no piece matches,
        becomes a single [UNK].
        """
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        result = self._wordpiece_uncached(word)
        if len(self._cache) >= _WORD_CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = result
        return result

    def _wordpiece_uncached(self, word: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        unk = ((UNK,), (self.unk_id,))
        n = len(word)
        if n > MAX_INPUT_CHARS_PER_WORD:
            return unk
        whole = self.vocab.ids.get(word)
        if whole is not None:  # the longest possible first piece is the whole word
            return (word,), (whole,)
        if not self._chars.issuperset(word):
            return unk
        # Google tries every end from the end of the word down and keeps the first (longest)
        # candidate in the vocab. Growing the candidate one character at a time while it is
        # still the prefix of some entry, and keeping the longest entry met, finds the same
        # piece: a candidate that is no entry's prefix cannot grow into an entry.
        lookup = self._prefixes.get
        pieces: list[str] = []
        piece_ids: list[int] = []
        start = 0
        while start < n:
            candidate = word[0] if start == 0 else "##" + word[start]
            end = start + 1
            best_end, best_piece, best_id = start, "", 0
            found = lookup(candidate, _NOT_A_PREFIX)
            while found is not _NOT_A_PREFIX:
                if found is not None:
                    best_end, best_piece, best_id = end, candidate, found
                if end == n:
                    break
                candidate += word[end]
                end += 1
                found = lookup(candidate, _NOT_A_PREFIX)
            if best_end == start:
                return unk
            pieces.append(best_piece)
            piece_ids.append(best_id)
            start = best_end
        return tuple(pieces), tuple(piece_ids)

    def tokenize_with_ids(self, text: str) -> tuple[list[str], list[int]]:
        """WordPiece tokens of a text (no special tokens) and their ids."""
        tokens: list[str] = []
        ids: list[int] = []
        cached = self._cache.get
        wordpiece = self.wordpiece
        for word in basic_tokenize(text, self.do_lower_case):
            pieces, piece_ids = cached(word) or wordpiece(word)
            tokens += pieces
            ids += piece_ids
        return tokens, ids

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of a text, without special tokens."""
        return self.tokenize_with_ids(text)[0]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of tokens that are in the vocab (as Google's, a KeyError for others)."""
        return [self.vocab.ids[t] for t in tokens]


# --------------------------------------------------------------------------------------------
# Model inputs: [CLS] A [SEP] (B [SEP]), Google's truncation and zero padding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """One example exactly as the model sees it.

    Attributes:
        tokens: the sequence with special tokens, before padding.
        input_ids, segment_ids, input_mask: padded to max_seq_length when one was given.
        truncated: how many WordPiece tokens Google's truncation removed.
    """

    tokens: list[str]
    input_ids: list[int]
    segment_ids: list[int]
    input_mask: list[int]
    truncated: int = 0


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> int:
    """Google's `_truncate_seq_pair`: pop from the end of the longer side (ties: B) until it fits.

    Works in place on both lists and returns how many items were removed.
    """
    removed = 0
    while len(tokens_a) + len(tokens_b) > max_length:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
        removed += 1
    return removed


def build_inputs(
    vocab: Vocab,
    tokens_a: list[str],
    ids_a: list[int],
    tokens_b: list[str] | None = None,
    ids_b: list[int] | None = None,
    max_seq_length: int | None = None,
) -> Encoding:
    """Google's `convert_single_example` for one text or a pair.

    Truncates to max_seq_length - 2 (one text) or - 3 (a pair), adds [CLS]/[SEP], gives segment id
    0 up to the first [SEP] and 1 after, and pads input ids, mask and segments with 0.
    """
    cls_id, sep_id = vocab.id_of(CLS), vocab.id_of(SEP)
    a_tok, a_ids = list(tokens_a), list(ids_a)
    # Google tests `if tokens_b:`: a second text that tokenizes to nothing (empty, or only
    # characters the tokenizer drops, such as U+200B) makes a single-text example,
    # `[CLS] A [SEP]`, truncated as one text.
    b_tok = list(tokens_b) if tokens_b else None
    b_ids = list(ids_b) if tokens_b and ids_b is not None else None
    truncated = 0
    if max_seq_length is not None:
        if max_seq_length < (5 if b_tok is not None else 3):
            raise UsageError(
                f"--max-seq-length {max_seq_length} leaves no room for text",
                "pass at least 3 for one text, 5 for a pair",
            )
        if max_seq_length > MAX_SEQ_LENGTH:
            # Padding is built in memory: a typo of a few zeros must not fill it.
            raise UsageError(
                f"--max-seq-length {max_seq_length} is longer than any BERT takes",
                f"pass at most {MAX_SEQ_LENGTH} (BERT models take 512)",
            )
        if b_tok is not None and b_ids is not None:
            truncated = truncate_seq_pair(a_tok, b_tok, max_seq_length - 3)
            del a_ids[len(a_tok) :], b_ids[len(b_tok) :]
        elif len(a_tok) > max_seq_length - 2:
            truncated = len(a_tok) - (max_seq_length - 2)
            del a_tok[max_seq_length - 2 :], a_ids[max_seq_length - 2 :]
    tokens = [CLS, *a_tok, SEP]
    input_ids = [cls_id, *a_ids, sep_id]
    segment_ids = [0] * len(tokens)
    if b_tok is not None and b_ids is not None:
        tokens += [*b_tok, SEP]
        input_ids += [*b_ids, sep_id]
        segment_ids += [1] * (len(b_tok) + 1)
    input_mask = [1] * len(input_ids)
    if max_seq_length is not None:
        pad = max_seq_length - len(input_ids)
        input_ids += [0] * pad
        input_mask += [0] * pad
        segment_ids += [0] * pad
    return Encoding(tokens, input_ids, segment_ids, input_mask, truncated)
