"""Real multilingual text, read at run time from installed packages (nothing is copied here).

Two sources, both real data that people wrote and that ship inside packages the test extra
installs:

* Babel's CLDR locale data, over every locale Babel knows: display names of languages,
  territories, scripts, variants and currencies, currency symbols, month, day, quarter, era and
  day-period names, unit display names, time-zone and metazone names, list and zone patterns,
  number symbols, and unit phrases Babel formats ("12 километров", "1 χιλιόμετρο ανά ώρα").
* Faker's locale providers, over every locale Faker knows, with a fixed seed: person names,
  addresses, company names, cities and the lorem texts built from each locale's word list.

`multilingual_lines()` returns the union, one line per entry (values holding newlines give one
line per part), stripped, without empty or repeated lines, in a fixed order. The same installed
versions always give the same list, whatever PYTHONHASHSEED is (`corpus_digest()` names it); it is
built once per process.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache

# Public `babel.Locale` properties whose (nested) string values are real, human-written text.
BABEL_PROPERTIES = (
    "languages",
    "territories",
    "scripts",
    "variants",
    "currencies",
    "currency_symbols",
    "months",
    "days",
    "quarters",
    "eras",
    "day_periods",
    "unit_display_names",
    "time_zones",
    "meta_zones",
    "zone_formats",
    "list_patterns",
    "number_symbols",
)

# Units Babel formats in full for every locale ("3 kilometres per hour").
BABEL_UNITS = (
    "length-kilometer",
    "length-mile",
    "mass-kilogram",
    "duration-hour",
    "duration-day",
    "speed-kilometer-per-hour",
    "temperature-celsius",
    "volume-liter",
    "digital-megabyte",
    "area-square-meter",
)

FAKER_SEED = 20181018  # the day Google published BERT-Base uncased
FAKER_ROUNDS = 40  # of each provider, per Faker locale
FAKER_PROVIDERS = ("name", "address", "company", "city", "street_name", "job", "text")
# (locale, provider) pairs whose output depends on PYTHONHASHSEED (Faker picks from a set there),
# left out so that every process gets the same corpus.
FAKER_UNSTABLE = {("it_IT", "city")}

# Inclusive code-point ranges of the scripts the differential test insists on.
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Cyrillic": ((0x0400, 0x052F),),
    "Arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Hebrew": ((0x0590, 0x05FF),),
    "Devanagari": ((0x0900, 0x097F),),
    "Bengali": ((0x0980, 0x09FF),),
    "Tamil": ((0x0B80, 0x0BFF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Georgian": ((0x10A0, 0x10FF),),
    "Ethiopic": ((0x1200, 0x137F),),
    "CJK": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
    "Kana": ((0x3040, 0x30FF),),
    "Hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
}


def _strings(value: object) -> Iterator[str]:
    """Every string inside a (nested) Babel data value, keys in a stable order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key in sorted(value.keys(), key=repr):
            try:
                item = value[key]
            except (KeyError, LookupError):  # an alias CLDR does not resolve for this locale
                continue
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _babel_texts() -> Iterator[str]:
    from babel import Locale, localedata
    from babel.units import format_unit

    for identifier in sorted(localedata.locale_identifiers()):
        locale = Locale.parse(identifier)
        for name in BABEL_PROPERTIES:
            try:
                value = getattr(locale, name)
            except (KeyError, AttributeError):
                continue
            yield from _strings(value)
        for unit in BABEL_UNITS:
            for amount in (1, 3, 12.5):
                try:
                    yield format_unit(amount, unit, length="long", locale=locale)
                except Exception:  # a locale without that unit pattern; nothing to learn from it
                    break


def _faker_texts() -> Iterator[str]:
    from faker import Faker
    from faker.config import AVAILABLE_LOCALES

    for identifier in sorted(AVAILABLE_LOCALES):
        with warnings.catch_warnings():  # deprecated locales (fr_QC) still carry real data
            warnings.simplefilter("ignore")
            fake = Faker(identifier)
        fake.seed_instance(FAKER_SEED)
        for _ in range(FAKER_ROUNDS):
            for provider in FAKER_PROVIDERS:
                if (identifier, provider) in FAKER_UNSTABLE:
                    continue
                method = getattr(fake, provider, None)
                if method is None:
                    continue
                try:
                    yield method()
                except (AttributeError, ValueError):
                    continue


def _unique_lines(texts: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    lines: list[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if line and line not in seen:
                seen.add(line)
                lines.append(line)
    return lines


@lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    babel_lines = _unique_lines(_babel_texts())
    faker_lines = _unique_lines(_faker_texts())
    # Interleave so that any prefix or evenly spaced sample mixes both sources.
    merged: list[str] = []
    step = max(1, len(babel_lines) // max(1, len(faker_lines)))
    faker_iter = iter(faker_lines)
    for index, line in enumerate(babel_lines):
        merged.append(line)
        if index % step == step - 1:
            extra = next(faker_iter, None)
            if extra is not None:
                merged.append(extra)
    merged.extend(faker_iter)
    return tuple(_unique_lines(merged))


def multilingual_lines(min_lines: int = 100_000) -> list[str]:
    """All corpus lines (deterministic); raises if the installed packages give fewer than asked."""
    lines = _corpus()
    if len(lines) < min_lines:
        raise RuntimeError(
            f"the installed Babel and Faker give only {len(lines)} distinct lines, "
            f"fewer than the {min_lines} asked for"
        )
    return list(lines)


def corpus_digest(lines: list[str]) -> str:
    """SHA-256 of the lines joined by newlines, to tell whether two runs saw the same text."""
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def scripts_present(lines: Iterable[str]) -> dict[str, int]:
    """How many lines hold at least one character of each script in SCRIPT_RANGES."""
    patterns = {
        script: re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in ranges) + "]")
        for script, ranges in SCRIPT_RANGES.items()
    }
    counts = dict.fromkeys(SCRIPT_RANGES, 0)
    for line in lines:
        for script, pattern in patterns.items():
            if pattern.search(line):
                counts[script] += 1
    return counts


def stats(lines: list[str]) -> dict[str, int]:
    """Size of a list of lines: count, characters and UTF-8 bytes (one newline per line)."""
    return {
        "lines": len(lines),
        "chars": sum(len(line) for line in lines),
        "bytes": sum(len(line.encode("utf-8")) + 1 for line in lines),
    }
