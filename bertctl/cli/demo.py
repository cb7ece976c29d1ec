"""`bertctl demo`: the quick-start job on data that ships with bertctl, offline."""

from __future__ import annotations

from bertctl import ui

EXAMPLES = (
    ("John Smith", None),
    ("UNwant\u00e9d, running!", None),
    ("Is this sentence a paraphrase?", "Is it one?"),
)


def demo() -> None:
    """Tokenize sample text with the bundled uncased vocab, then inspect two catalogue models.

    [bold]Example[/]

      [cyan]bertctl demo[/]
    """
    from bertctl.cli.inspect import render
    from bertctl.cli.tokenize import _encode, _print_human
    from bertctl.inspection import inspect_target
    from bertctl.modelref import tokenizer_for

    choice = tokenizer_for(None, None, None)
    ui.out.rule("[bold]Tokenize[/] (Google's WordPiece, " + choice.description + ")")
    for text, pair in EXAMPLES:
        shown = f"{text!r}" + (f" + {pair!r}" if pair else "")
        ui.out.print(f"\n[bold]{shown}[/]")
        _print_human(choice.tokenizer, _encode(choice.tokenizer, text, pair, 16 if pair else None))
    for name in ("base-uncased", "base-multilingual-cased"):
        ui.out.print()
        ui.out.rule(f"[bold]Inspect[/] {name}")
        render(inspect_target(name))
