"""math-verify (sympy) behind a deadline and input guards: the symbolic part of comparison.

`equal(gold, answer)` parses both with math-verify (each wrapped in ``\\boxed{}``, so that the
whole answer is read) and asks math-verify's `verify` whether they are the same mathematical
object: expressions, equations and inequalities as relations, sets, tuples, intervals, matrices.

math-verify's own timeouts use ``signal.alarm`` and raise ValueError outside the main thread, so it
is always called with its timeouts off; this module sets its own deadline (`TIMEOUT_S` for parse
and verify together) with ``setitimer`` in the main thread of any process (worker processes
included), leaves any timer the caller has armed alone, and outside the main thread relies on the
input guards only (length, huge exponents and factorials, integrals and sums). A timeout or any
sympy failure is a non-match, never a crash.
"""

from __future__ import annotations

import functools
import re
import signal
import threading
from contextlib import contextmanager

from compass.answers.text import balanced, prep, unwrap_math

TIMEOUT_S = 3.0  # wall-clock budget of one comparison (parse both + verify)
MAX_CHARS = 400  # longer answers are not handed to sympy

stats = {"calls": 0, "timeouts": 0}


class Deadline(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that sympy's `except Exception` cannot
    swallow it."""


@contextmanager
def deadline(seconds: float):
    """Interrupt the block after `seconds` (main thread only; elsewhere signals are unavailable).
    A timer the caller already armed is left untouched (and this block then runs unbounded)."""
    usable = bool(seconds and seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread())
    if usable:
        try:
            usable = signal.getitimer(signal.ITIMER_REAL)[0] == 0
        except (OSError, ValueError):
            usable = False
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


_DANGER_RE = re.compile(
    r"\^\s*\{?\s*\(?\s*[-+]?\d{4,}"  # 2^{10000}
    r"|\^\s*\{[^{}]*\^"  # power towers
    r"|\d{4,}\s*!"  # 1000!
    r"|\\(?:int|sum|prod|lim|iint|oint)\b"
)


@functools.lru_cache(maxsize=1)
def _math_verify():
    import math_verify
    import math_verify.grader
    import math_verify.parser

    # Its signal-based timeouts are off (they raise in threads) and ours is used instead: silence
    # its one-time "timeout is disabled" warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    return math_verify


@functools.lru_cache(maxsize=16384)
def _parse(s: str):
    return tuple(_math_verify().parse("\\boxed{" + s + "}", parsing_timeout=None))


def safe(s: str) -> bool:
    """Short, balanced, and free of what makes sympy run for minutes."""
    return bool(s) and len(s) <= MAX_CHARS and balanced(s) and not _DANGER_RE.search(s)


@functools.lru_cache(maxsize=65536)
def equal(gold: str, answer: str) -> bool:
    """math-verify's judgement of `answer` against `gold`, under the deadline; False when either
    side fails the guards, does not parse, or runs out of time."""
    g, a = unwrap_math(prep(gold)), unwrap_math(prep(answer))
    if not safe(g) or not safe(a):
        return False
    stats["calls"] += 1
    mv = _math_verify()  # imported before the deadline is armed: an interrupted import would stay broken
    try:
        with deadline(TIMEOUT_S):
            gp, ap = _parse(g), _parse(a)
            if not gp or not ap:
                return False
            return bool(mv.verify(list(gp), list(ap), timeout_seconds=None))
    except Deadline:
        stats["timeouts"] += 1
        return False
    except Exception:  # a sympy failure is a non-match, never a crash of the grader
        return False
