"""`bertctl tokenize` end to end, through the real command."""

from __future__ import annotations

import json

from clirun import bertctl, one_error_line

from bertctl.tokenization import Tokenizer, bundled_vocab


def test_john_smith_out_of_the_box():
    r = bertctl("tokenize", "John Smith")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["tokens", "[CLS]", "john", "smith", "[SEP]"]
    assert lines[1].split() == ["ids", "101", "2198", "3044", "102"]
    assert lines[2].split() == ["segments", "0", "0", "0", "0"]
    assert "30,522 tokens, lowercase" in r.stderr


def test_json_pair_truncation_and_padding():
    r = bertctl(
        "tokenize",
        "Is this a test?",
        "--pair",
        "Yes it is, a rather long one",
        "--max-seq-length",
        "12",
        "--json",
    )
    assert r.code == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["tokens"] == ["is", "this", "a", "test", "?"]
    # 5 + 8 tokens for 9 slots: pop from the longer side (B) until it fits
    assert rec["input_tokens"] == [
        "[CLS]",
        "is",
        "this",
        "a",
        "test",
        "?",
        "[SEP]",
        "yes",
        "it",
        "is",
        ",",
        "[SEP]",
    ]
    assert rec["segment_ids"] == [0] * 7 + [1] * 5
    assert rec["truncated"] == 4
    r = bertctl("tokenize", "John Smith", "--max-seq-length", "6", "--json")
    rec = json.loads(r.stdout)
    assert rec["input_ids"] == [101, 2198, 3044, 102, 0, 0]
    assert rec["input_mask"] == [1, 1, 1, 1, 0, 0]
    assert rec["segment_ids"] == [0] * 6


def test_human_output_shows_padding_and_mask():
    r = bertctl("tokenize", "John Smith", "--max-seq-length", "6")
    assert r.code == 0
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    assert rows["tokens"] == ["[CLS]", "john", "smith", "[SEP]", "[PAD]", "[PAD]"]
    assert rows["mask"] == ["1", "1", "1", "1", "0", "0"]


def test_cased_flag_with_bare_vocab(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nJohn\njohn\n", encoding="utf-8")
    r = bertctl("tokenize", "John", "--vocab", str(vocab), "--json")
    assert json.loads(r.stdout)["ids"] == [5]  # a bare vocab is uncased by default
    r = bertctl("tokenize", "John", "--vocab", str(vocab), "--cased", "--json")
    assert json.loads(r.stdout)["ids"] == [4]


def test_input_file_streams_one_json_object_per_line(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes("John Smith\n\nH\u00e9llo, w\u00f6rld!\r\n".encode() + b"bad \xff byte\n")
    r = bertctl("tokenize", "--input", str(src), "--json")
    assert r.code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["tokens"] for rec in records] == [
        ["john", "smith"],
        [],
        ["hello", ",", "world", "!"],
        ["bad", "byte"],
    ]
    assert records[0]["ids"] == [2198, 3044]
    assert "input_ids" not in records[0]  # lean lines unless --max-seq-length asks for inputs
    assert "1 line(s) held bytes that are not UTF-8 (first: line 4)" in r.stderr
    r = bertctl("tokenize", "--input", str(src), "--json", "--max-seq-length", "6")
    first = json.loads(r.stdout.splitlines()[0])
    assert first["input_ids"] == [101, 2198, 3044, 102, 0, 0]
    assert first["input_mask"] == [1, 1, 1, 1, 0, 0]


def test_workers_give_the_same_output_in_order(tmp_path):
    # more than one chunk, so blocks must come back from the pool in input order
    texts = [f"line {i} H\u00e9llo, w\u00f6rld! \u535a {'x' * (i % 7)}" for i in range(60000)]
    src = tmp_path / "big.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    one = bertctl("tokenize", "--input", str(src), "--json", "--workers", "1")
    two = bertctl("tokenize", "--input", str(src), "--json", "--workers", "2")
    assert one.code == two.code == 0, two.stderr
    assert one.stdout == two.stdout
    assert len(two.stdout.splitlines()) == 60000
    expected = Tokenizer(bundled_vocab(), do_lower_case=True).tokenize(texts[-1])
    assert json.loads(two.stdout.splitlines()[59999])["tokens"] == expected


def test_input_from_stdin_plain_output():
    r = bertctl("tokenize", "-i", "-", stdin=b"UNwanted running\nJohn Johanson's,\n")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["unwanted running", "john johan ##son ' s ,"]


def test_casing_mismatch_names_the_flag():
    r = bertctl("tokenize", "x", "--model", "base-uncased", "--cased")
    assert r.code == 1
    line = one_error_line(r)
    assert "base-uncased" in line and "pass --uncased" in line


def test_cased_catalogue_model_not_downloaded():
    r = bertctl("tokenize", "x", "--model", "base-cased")
    assert r.code == 1
    assert "bertctl download base-cased" in one_error_line(r)


def test_release_folder_name_sets_casing(tmp_path):
    folder = tmp_path / "cased_L-12_H-768_A-12"
    folder.mkdir()
    (folder / "bert_config.json").write_text('{"vocab_size": 6}')
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nJohn\njohn\n")
    r = bertctl("tokenize", "John", "--model", str(folder), "--json")
    assert json.loads(r.stdout)["ids"] == [4]  # cased, as the folder name says
    r = bertctl("tokenize", "John", "--model", str(folder), "--uncased")
    assert r.code == 1 and "pass --cased" in one_error_line(r)


def test_usage_errors_exit_2():
    assert bertctl("tokenize").code == 2
    assert bertctl("tokenize", "x", "--input", "-").code == 2
    r = bertctl("tokenize", "x", "--model", "base-uncased", "--vocab", "v.txt")
    assert r.code == 2 and "pass one of them" in one_error_line(r)
    assert bertctl("tokenize", "x", "--max-seq-length", "0").code == 2
    # a worker count that could only exhaust the machine: refused before any process starts
    r = bertctl("tokenize", "--input", "-", "--workers", "100000", stdin=b"x\n")
    assert r.code == 2 and "--workers 100000" in one_error_line(r) and r.stdout == ""


def test_bad_vocab_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    r = bertctl("tokenize", "x", "--vocab", str(empty))
    assert r.code == 1 and "is empty" in one_error_line(r)
    dup = tmp_path / "dup.txt"
    dup.write_text("[PAD]\n[UNK]\nfoo\nbar\nfoo\n")
    r = bertctl("tokenize", "x", "--vocab", str(dup))
    assert r.code == 1 and "dup.txt:5 repeats line 3" in one_error_line(r)
    r = bertctl("tokenize", "x", "--vocab", str(tmp_path / "missing.txt"))
    assert r.code == 1 and "missing.txt: no such file" in one_error_line(r)
    r = bertctl("tokenize", "--input", str(tmp_path / "nope.txt"))
    assert r.code == 1 and "nope.txt: no such file" in one_error_line(r)


def test_undecodable_vocab_bytes_warn_and_match_google(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nca\xfffe\n")
    r = bertctl("tokenize", "cafe", "--vocab", str(vocab), "--json")
    assert r.code == 0
    assert json.loads(r.stdout)["ids"] == [4]  # b"ca\xfffe" decodes to "cafe" ignoring errors
    assert "warning:" in r.stderr and "line 5" in r.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """`bertctl tokenize --input big.txt --json | head -1`: the pipe closing is not an error."""
    import subprocess
    import sys

    big = tmp_path / "big.txt"
    big.write_text("the quick brown fox jumps over the lazy dog\n" * 200_000)
    command = [sys.executable, "-m", "bertctl", "tokenize", "--input", str(big), "--json"]
    for workers in ("1", "2"):
        proc = subprocess.Popen(
            [*command, "--workers", workers],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `head` does
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141  # a pipe writer's status (128 + SIGPIPE)
        assert json.loads(first)["tokens"][:2] == ["the", "quick"]
        assert "error" not in stderr and "Traceback" not in stderr, stderr


def test_cased_on_an_all_lowercase_vocab_warns_of_the_unknown_words(shared_data):
    """`--cased` with the uncased release vocab turns "John Smith" into [UNK] [UNK]: said."""
    vocab = shared_data / "vocab" / "uncased_vocab.txt"
    for extra in ((), ("--vocab", str(vocab))):
        r = bertctl("tokenize", "John Smith", "--cased", "--json", *extra)
        assert r.code == 0
        assert json.loads(r.stdout)["tokens"] == ["[UNK]", "[UNK]"]
        assert "warning: --cased with a vocab that holds no upper-case tokens" in r.stderr
    r = bertctl("tokenize", "John Smith", "--json", "--vocab", str(vocab))
    assert "warning" not in r.stderr  # uncased, as the vocab is: nothing to say
