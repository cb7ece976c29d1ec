"""What every fuzz test shares: a fast sample by default, 10,000 examples under `-m slow`, and a
guard that turns a hang or a runaway allocation into a failure of the example that caused it.

Each parser gets two tests with the same property and strategy:

    @FAST
    @given(data=st.binary())
    def test_x_fuzz(tmp_path, data):
        check_x(tmp_path, data)

    @SLOW
    @given(data=st.binary())
    def test_x_fuzz_10k(tmp_path, data):
        check_x(tmp_path, data)

and each check runs the parser inside `bounded()`.
"""

from __future__ import annotations

import contextlib
import signal
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

FAST_EXAMPLES = 100
SLOW_EXAMPLES = 10_000

# A hang guard, not a speed test: parsers finish these bounded inputs in milliseconds, so only
# an endless loop (or a lying size field walked byte by byte) comes near it.
EXAMPLE_SECONDS = 30.0
# Inputs are at most a few hundred kilobytes; a parser that allocates more than this for one of
# them trusted a size field it should have checked against the bytes present.
PEAK_BYTES = 96 << 20

_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.function_scoped_fixture,
    HealthCheck.data_too_large,
]

FAST = settings(max_examples=FAST_EXAMPLES, deadline=None, suppress_health_check=_SUPPRESSED)
# A command-line example is a whole command (about 0.1 s of Typer set-up alone), so the default
# run samples fewer of them; the slow campaign runs the full 10,000.
FAST_CLI = settings(FAST, max_examples=40)


def SLOW(test):
    """The 10,000-example campaign: marked slow and skipped unless `-m slow` selects it."""
    test = settings(
        max_examples=SLOW_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,  # a campaign explores afresh instead of replaying old failures only
    )(test)
    return pytest.mark.slow(reason="a 10,000-example fuzzing campaign")(test)  # see conftest


class Hang(AssertionError):
    """An example ran past EXAMPLE_SECONDS. An AssertionError so no parser's handler eats it."""


@contextlib.contextmanager
def bounded(
    seconds: float = EXAMPLE_SECONDS, peak_bytes: int | None = PEAK_BYTES
) -> Iterator[None]:
    """Fail when the body runs longer than `seconds` or allocates more than `peak_bytes`.

    Time is cut by SIGALRM (the body is interrupted, not waited for); memory is Python's and
    numpy's allocations as tracemalloc sees them (memory-mapped files do not count, and must
    not: mapping a tensor is how reading is meant to work). `peak_bytes=None` checks time only,
    for bodies that tracemalloc would slow several times over.
    """
    if peak_bytes is None:
        with _time_limit(seconds):
            yield
        return
    with _time_limit(seconds):
        tracing = not tracemalloc.is_tracing()
        if tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            yield
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if tracing:
                tracemalloc.stop()
    assert peak <= peak_bytes, f"an example allocated {peak:,} bytes (limit {peak_bytes:,})"


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:

    def on_alarm(signum, frame):
        raise Hang(f"an example ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
