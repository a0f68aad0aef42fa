"""Synthetic rejected responses: three corruptions of a teacher trace, as pure functions over text.

Each strategy takes the (chosen) response and a `random.Random` and returns the corrupted
response, or None when it cannot apply. Only the part a strategy owns is touched:

- `omit_thinking`: the content of ``<Thinking>`` is removed; the tags stay (``<Thinking></Thinking>``).
- `tamper_thinking_numbers`: one to three numbers inside ``<Thinking>`` get a nearby different
  value in the same written form (digit count, decimal places, thousands separators, sign,
  percent sign and full-width digits are kept, because only the digits themselves are rewritten).
- `tamper_answer`: the content of the answer's ``\\boxed{}`` becomes a different value of the same
  kind: a number in it is changed (integer, decimal, fraction part, negative, LaTeX expression,
  base-n numeral within its base), a multiple-choice letter becomes another letter, a word answer
  becomes its opposite (even/odd, east/west, sin/cos, ...), or a binary +/- is flipped.

`corrupt` draws a strategy for one response, falling back to the others when it cannot apply.

Sections come from the trace format's one parser (`compass.trace_format.locate`: the spans of a
well-formed response, found leniently in one that is not, so that the corruptions still apply).
"""

from __future__ import annotations

import random
import re
from typing import Callable, Mapping

from compass.trace_format import Sections, locate

STRATEGIES = ("omit_thinking", "tamper_thinking_numbers", "tamper_answer")

# ---------------------------------------------------------------------------------------------
# Numbers in their written form
# ---------------------------------------------------------------------------------------------

_DIGIT = "[0-9\uff10-\uff19]"  # ASCII and full-width digits (other scripts' digits are left alone)
_LEAD = "[1-9\uff11-\uff19]"
_THOUSANDS = r"(?:,\\!\s?|\{,\}|,|\uff0c)"  # 1,000  10,\!080  1{,}000  1，000
_DECIMAL = "[.\uff0e]"
# Not inside an identifier (x1, a_2, CO2, \frac12) nor a subscript index (x_{10}); not the tail of
# another number. Sign, currency, percent and units stay outside the match, hence unchanged.
NUMBER_RE = re.compile(
    rf"(?<![A-Za-z_0-9\uff10-\uff19.\uff0e])(?<!_\{{)"
    rf"(?:(?:{_LEAD}{_DIGIT}{{0,2}}(?:{_THOUSANDS}{_DIGIT}{{3}}(?!{_DIGIT}))+|{_DIGIT}+)(?:{_DECIMAL}{_DIGIT}+)?"
    rf"|{_DECIMAL}{_DIGIT}+)"
)
_FULLWIDTH_ZERO = 0xFF10


def _to_base(value: int, base: int, width: int) -> str:
    if base == 10:
        return str(value).zfill(width)
    out = []
    while value:
        value, r = divmod(value, base)
        out.append("0123456789"[r])
    return "".join(reversed(out)).zfill(width)


def _new_digits(value: int, n: int, int_len: int, base: int, rng: random.Random) -> str:
    lo = base ** (n - 1) if int_len > 1 else 1  # keep the leading digit non-zero; never all zeros
    hi = base**n - 1
    for _ in range(8):
        new = value + rng.randint(1, max(1, value // 5)) * (1 if rng.random() < 0.5 else -1)
        if lo <= new <= hi:
            break
    else:  # tiny ranges: any other value of the same width
        inside = lo <= value <= hi
        new = rng.randint(lo, hi - 1 if inside else hi)
        if inside and new >= value:
            new += 1
    return str(new).zfill(n) if base == 10 else _to_base(new, base, n)


def perturb_number(written: str, rng: random.Random, base: int = 10) -> str:
    """A different value in the same written form: same digit positions and count, same separators,
    no new leading zero, never all zeros. Typically within ±20% of the original value."""
    if base == 10 and written.isdigit() and written.isascii():  # the common case: a plain integer
        return _new_digits(int(written), len(written), len(written), 10, rng)
    digits = _NON_DIGIT_RE.sub("", written)
    mark = _MARK_RE.search(written)
    int_len = len(digits) if mark is None else len(_NON_DIGIT_RE.sub("", written[: mark.start()]))
    new = _new_digits(int(digits, base), len(digits), int_len, base, rng)  # int() reads full-width digits
    if not written.isascii():  # each digit keeps its script (ASCII or full-width)
        new = "".join(chr(ord(d) - 48 + _FULLWIDTH_ZERO) if o >= "\uff10" else d for d, o in zip(new, digits_of(written)))
    pieces = _DIGIT_RE.split(written)  # the text around the digits, kept as it is
    return pieces[0] + "".join(d + p for d, p in zip(new, pieces[1:]))


def digits_of(written: str) -> list[str]:
    return _DIGIT_RE.findall(written)


_DIGIT_RE = re.compile(_DIGIT)
_NON_DIGIT_RE = re.compile("[^0-9\uff10-\uff19]+")
_MARK_RE = re.compile(_DECIMAL)


# ---------------------------------------------------------------------------------------------
# The strategies
# ---------------------------------------------------------------------------------------------


def omit_thinking(response: str, rng: random.Random, loc: Sections | None = None) -> str | None:
    """The thinking removed, tags kept: None when there is no (non-blank) thinking."""
    loc = loc or locate(response)
    if loc.thinking is None:
        return None
    t0, t1 = loc.thinking
    if not response[t0:t1].strip():
        return None
    return response[:t0] + response[t1:]


def tamper_thinking_numbers(response: str, rng: random.Random, loc: Sections | None = None, max_changes: int = 3) -> str | None:
    """One to `max_changes` numbers of the thinking changed in place; None when it has no number.

    The numbers are found from random offsets (the next number after each), so a long thinking
    costs no more than a short one."""
    loc = loc or locate(response)
    if loc.thinking is None:
        return None
    t0, t1 = loc.thinking
    first = NUMBER_RE.search(response, t0, t1)
    if first is None:
        return None
    spans = set()
    for _ in range(rng.randint(1, max_changes)):
        m = NUMBER_RE.search(response, rng.randrange(t0, t1), t1) or first
        spans.add(m.span())
    parts, last = [], 0
    for s, e in sorted(spans):
        if s < last:  # overlaps the previous one (a tail of "1,234" and the whole of it)
            continue
        parts.append(response[last:s])
        parts.append(perturb_number(response[s:e], rng))
        last = e
    parts.append(response[last:])
    return "".join(parts)


# Multiple-choice letters: "C", "(C)", "\text{(C)}", "\textbf{C}", lower case only in parentheses.
_CHOICE_RE = re.compile(
    r"^(\s*(?:\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{\s*)?(?:\(\s*)?)([A-E])((?:\s*\))?(?:\s*\})?\s*)$"
)
_CHOICE_LOWER_RE = re.compile(r"^(\s*(?:\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{\s*)?\(\s*)([a-e])(\s*\)(?:\s*\})?\s*)$")
_PLAIN_RE = re.compile(r"\s*[-+]?\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*")
# Digits LaTeX reads one at a time: \frac12, \frac 59, \dfrac3{4}, \sqrt2.
_COMPACT_RE = re.compile(r"\\[dt]?frac\s*([0-9])(?:\s*([0-9]))?|\\sqrt\s*([0-9])")
_BASE_RE = re.compile(r"_(?:([0-9]{1,2})|\{([0-9]{1,2})\})")
_WORD_PAIRS = [  # answers in words, and LaTeX operators/functions (those only after a backslash)
    ("even", "odd"), ("east", "west"), ("north", "south"), ("left", "right"), ("yes", "no"), ("true", "false"),
    ("increasing", "decreasing"), ("positive", "negative"), ("finite", "infinite"), ("maximum", "minimum"),
    ("always", "never"), ("possible", "impossible"), ("ellipse", "hyperbola"), ("parabola", "circle"),
    ("acute", "obtuse"), ("convergent", "divergent"),
]
_COMMAND_PAIRS = [("sin", "cos"), ("tan", "cot"), ("sec", "csc"), ("sinh", "cosh"), ("pm", "mp"), ("cup", "cap"), ("max", "min")]
_OPPOSITES = {**{a: b for a, b in _WORD_PAIRS + _COMMAND_PAIRS}, **{b: a for a, b in _WORD_PAIRS + _COMMAND_PAIRS}}


def _alternation(pairs) -> str:
    return "|".join(sorted({w for p in pairs for w in p}, key=len, reverse=True))


# A word not part of a longer word nor a LaTeX command (\left stays \left); a command after its backslash.
_WORD_RE = re.compile(
    rf"(?<![A-Za-z\\])({_alternation(_WORD_PAIRS)})(?![A-Za-z])|(?<=\\)({_alternation(_COMMAND_PAIRS)})(?![A-Za-z])", re.I
)
# A binary + or - (an operand on each side).
_BINOP_RE = re.compile(r"(?<=[0-9A-Za-z}\)\]])(\s*)([+-])(\s*)(?=[0-9A-Za-z\\(\[{])")


def _number_tokens(box: str) -> list[tuple[int, int, int, bool]]:
    """(start, end, base, in_exponent) of each number of a boxed answer."""
    tokens = []
    for m in _COMPACT_RE.finditer(box):
        for g in (1, 2, 3):
            if m.group(g) is not None:
                tokens.append((m.start(g), m.end(g)))
    taken = [(s, e) for s, e in tokens]
    for m in NUMBER_RE.finditer(box):
        s, e = m.span()
        if not any(s < te and ts < e for ts, te in taken):
            tokens.append((s, e))
    out = []
    for s, e in sorted(tokens):
        base = 10
        b = _BASE_RE.match(box, e)
        if b is not None:
            cand = int(b.group(1) or b.group(2))
            if 2 <= cand <= 10 and all(int(c) < cand for c in box[s:e] if c.isdigit()):
                base = cand
        before = box[max(0, s - 2) : s]
        out.append((s, e, base, before.endswith("^") or before == "^{"))
    return out


def tamper_boxed(box: str, rng: random.Random) -> str | None:
    """A different value of the same kind for a boxed answer, or None when none can be made."""
    m = _PLAIN_RE.fullmatch(box)
    if m is not None:  # the common case: a plain (signed) integer or decimal
        return box[: m.start(1)] + perturb_number(m.group(1), rng) + box[m.end(1) :]
    if not box.strip():
        return None
    for regex, letters in ((_CHOICE_RE, "ABCDE"), (_CHOICE_LOWER_RE, "abcde")):
        m = regex.match(box)
        if m:
            other = rng.choice([c for c in letters if c != m.group(2)])
            return box[: m.start(2)] + other + box[m.end(2) :]
    tokens = _number_tokens(box)
    if tokens:
        main = [t for t in tokens if not t[3]] or tokens  # prefer numbers that are not exponents
        s, e, base, _ = rng.choice(main)
        return box[:s] + perturb_number(box[s:e], rng, base) + box[e:]
    words = list(_WORD_RE.finditer(box))
    if words:
        m = rng.choice(words)
        g = 1 if m.group(1) is not None else 2
        word = m.group(g)
        new = _OPPOSITES[word.lower()]
        if word.isupper() and len(word) > 1:
            new = new.upper()
        elif word[0].isupper():
            new = new[0].upper() + new[1:]
        return box[: m.start(g)] + new + box[m.end(g) :]
    ops = list(_BINOP_RE.finditer(box))
    if ops:
        m = rng.choice(ops)
        return box[: m.start(2)] + ("-" if m.group(2) == "+" else "+") + box[m.end(2) :]
    return None


def tamper_answer(response: str, rng: random.Random, loc: Sections | None = None) -> str | None:
    """The boxed answer changed to a different value of the same kind, the reasoning kept."""
    loc = loc or locate(response)
    if loc.boxed is None:
        return None
    b0, b1 = loc.boxed
    new = tamper_boxed(response[b0:b1], rng)
    if new is None:
        return None
    return response[:b0] + new + response[b1:]


CORRUPTIONS: dict[str, Callable[..., str | None]] = {
    "omit_thinking": omit_thinking,
    "tamper_thinking_numbers": tamper_thinking_numbers,
    "tamper_answer": tamper_answer,
}


def corrupt(response: str, rng: random.Random, weights: Mapping[str, float], loc: Sections | None = None,
            ) -> tuple[str | None, str | None, str]:
    """(rejected, strategy used, strategy first drawn) for one response, the strategy drawn with `weights`.

    A drawn strategy that cannot apply falls back to another one with a positive weight, drawn again
    among those left; (None, None, drawn) when none applies. A strategy with weight 0 is never used.
    `loc`: the response's sections when known."""
    loc = loc or locate(response)
    left = {name: w for name, w in weights.items() if w > 0}
    drawn = ""
    while left:
        name = rng.choices(list(left), list(left.values()))[0]
        drawn = drawn or name
        out = CORRUPTIONS[name](response, rng, loc)
        if out is not None and out != response:
            return out, name, drawn
        del left[name]
    return None, None, drawn
