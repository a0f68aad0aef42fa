"""Numbers as answers are written: `parse_number` reads the one number a short answer states, and
`numbers_match` compares two of them under the precision policy.

Read: signs, thousands separators (``1,000``, ``1{,}000``, ``10,\\!080``, thin or plain spaces:
``1 000``), decimals, fractions (``a/b``, ``\\frac{a}{b}``, ``\\frac12``, mixed ``1 1/2``,
``1\\frac{4}{5}``), currency, unit and counter words ('18 dollars', '18個'), percent, degrees,
'5 million', English number words ('twenty-four') and Japanese numerals ('二十四', '1万2千',
full-width digits). An equation states a number only when it assigns it: to a name ('x = 5',
'a + b = 5': a left side made of symbols only, as math-verify has it) or as the end of a
computation ('16 - 3 - 4 = 9 eggs'); 'a + 3z = 0', 'x >= 5', 'x != 3' state a relation, not a number,
and '5!' is a factorial.

Precision policy (`numbers_match`): two exact values (integers, fractions, terminating decimals)
must be equal: a rounded '0.067' is not 0.066793. A decimal may stand for a value whose decimal
expansion never ends (14/3, 1/3) when it is that value correctly rounded and gives at least 3
decimal places and 3 significant digits ('4.667', '0.333'; not '4.67', '0.003'). A percent on one
side only also matches its value / 100 ('25%' = 0.25 = 25; '0.25' is not 25).
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import NamedTuple

from compass.answers.text import clean, strip_unit_powers

# --------------------------------------------------------------------------------------------
# Number words
# --------------------------------------------------------------------------------------------

_EN_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_EN_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_EN_WORDS = sorted([*_EN_UNITS, *_EN_TENS, "hundred", *SCALES], key=len, reverse=True)
_EN_WORD = "(?:" + "|".join(_EN_WORDS) + ")"
EN_RUN_RE = re.compile(rf"\b{_EN_WORD}(?:(?:\s+and\s+|\s+|-){_EN_WORD})*\b", re.I)
_EN_NUMWORD_RE = re.compile(rf"\b{_EN_WORD}\b", re.I)


def en_words_value(run: str) -> int | None:
    """'one hundred and five' -> 105; None when the words do not make one number."""
    total = current = 0
    last = None
    for w in re.split(r"[\s-]+", run.lower()):
        if w == "and" or not w:
            continue
        if w in _EN_UNITS:
            v = _EN_UNITS[w]
            if last == "unit" or (last == "tens" and (v >= 10 or v == 0)):
                return None
            current += v
            last = "unit"
        elif w in _EN_TENS:
            if last in ("unit", "tens"):
                return None
            current += _EN_TENS[w]
            last = "tens"
        elif w == "hundred":
            if last == "hundred":
                return None
            current = (current or 1) * 100
            last = "hundred"
        elif w in SCALES:
            if last == "scale":
                return None
            total += (current or 1) * SCALES[w]
            current = 0
            last = "scale"
        else:
            return None
    return total + current


def _en_sub(m: re.Match) -> str:
    run = m.group()
    if run.split()[0].lower() in ("hundred", *SCALES):  # "5 million": a scale of a number
        return run
    v = en_words_value(run)
    return run if v is None else str(v)


_JA_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_JA_SMALL = {"十": 10, "百": 100, "千": 1000}
_JA_BIG = {"万": 10**4, "億": 10**8, "兆": 10**12}
JA_NUMCHARS = "".join([*_JA_DIGITS, *_JA_SMALL, *_JA_BIG])
_JA_RUN_RE = re.compile(rf"[0-9.,]*[{JA_NUMCHARS}][0-9.,{JA_NUMCHARS}]*")
_JA_TOKEN_RE = re.compile(rf"\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|[{JA_NUMCHARS}]")
_JA_KANA = {"ひとつ": "1つ", "ふたつ": "2つ", "みっつ": "3つ", "よっつ": "4つ", "いつつ": "5つ", "むっつ": "6つ",
            "ななつ": "7つ", "やっつ": "8つ", "ここのつ": "9つ"}


def _ja_value(run: str) -> Fraction | None:
    """'二十四' -> 24, '1万2千' -> 12000, '3.5万' -> 35000, '二〇二四' -> 2024."""
    pos, total, section = 0, Fraction(0), Fraction(0)
    cur: Fraction | None = None
    prev_digit = False
    for m in _JA_TOKEN_RE.finditer(run):
        if m.start() != pos:
            return None
        pos = m.end()
        t = m.group()
        if t in _JA_DIGITS:
            d = _JA_DIGITS[t]
            cur = Fraction(d) if cur is None else (cur * 10 + d if prev_digit else None)
            if cur is None:
                return None
            prev_digit = True
            continue
        prev_digit = False
        if t in _JA_SMALL:
            section += (cur if cur is not None else 1) * _JA_SMALL[t]
            cur = None
        elif t in _JA_BIG:
            part = section + (cur or 0)
            total += (part if part else 1) * _JA_BIG[t]
            section, cur = Fraction(0), None
        else:  # Arabic digits
            if cur is not None:
                return None
            cur = Fraction(t.replace(",", ""))
    if pos != len(run):
        return None
    return total + section + (cur or 0)


def _ja_sub(m: re.Match) -> str:
    run = m.group().rstrip(".,")
    v = _ja_value(run)
    if v is None:
        return m.group()
    return (str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}") + m.group()[len(run) :]


# --------------------------------------------------------------------------------------------
# One number
# --------------------------------------------------------------------------------------------

NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?: \d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_FARG = rf"(?:\{{\s*[-+]?{NUM}\s*\}}|\d)"
_LFRAC = rf"\\frac\s*{_FARG}\s*{_FARG}"
_VALUE_RE = re.compile(
    r"(?P<pre>[^\d]*?)"
    r"(?P<sign>[-+]?)\s*(?:[$¥€£₹]|USD|JPY)?\s*(?P<sign2>[-+]?)\s*"
    r"(?P<num>"
    rf"(?P<mi>\d+)\s*(?P<mf>{_LFRAC})"  # mixed number 1\frac{4}{5}
    rf"|(?P<mi2>\d+)\s+(?P<mn2>\d+)\s*/\s*(?P<md2>\d+)"  # mixed number 1 1/2
    rf"|(?P<lf>{_LFRAC})"
    rf"|(?P<sn>{NUM})\s*/\s*(?P<sd>{NUM})"
    rf"|(?P<dec>{NUM})"
    r")"
    r"\s*(?P<scale>thousand|million|billion|trillion)?"
    r"\s*(?P<pct>%|percent\b|per\s*cent\b|pct\b|パーセント)?"
    r"(?P<post>[^\d]*)",
    re.I,
)
_FRAC_PARTS_RE = re.compile(rf"\\frac\s*({_FARG})\s*({_FARG})")

# Relations other than '=' (and '≈'): an answer holding one states a relation, never a number.
RELATION_RE = re.compile(r"<|>|≤|≥|≠|\\(?:le|ge|leq|geq|lt|gt|ne|neq|leqslant|geqslant|neq)(?![A-Za-z])")
_EQ_SPLIT_RE = re.compile(r"=|≈|\\approx(?![A-Za-z])|\\simeq(?![A-Za-z])")
_LIST_SEP_RE = re.compile(r"[,;、。]|\band\b|\.\s")
# A left side of symbols only (x, a_1, x_{10}, \alpha, a + b, f(x)), or of arithmetic on numbers
# (16 - 3 - 4, 9 \times $2, 3 eggs + 4 eggs).
SYMBOLIC_LHS_RE = re.compile(r"(?:[A-Za-z](?:_\{?\w++\}?)?|\\[A-Za-z]++|[-+*/() ])+")
_ARITH_LHS_RE = re.compile(r"(?:\d[\d,.]*+|\\(?:times|cdot|div|frac|dfrac)|[-+*/()^{}$%: ]|(?<![^\s(])[A-Za-z]{3,}+)+")
_VAR_RE = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+")


class Num(NamedTuple):
    value: Fraction
    percent: bool
    places: int | None  # decimal places when written as a plain decimal, else None
    var: str | None = None  # the name assigned to ('x' of 'x = 5'), when it is one symbol


def _fraction(tok: str) -> Fraction:
    return Fraction(tok.replace(",", "").replace(" ", "").strip("{} "))


_SINGLE_LETTER_RE = re.compile(r"(?<![A-Za-z'’])[A-Za-z](?![A-Za-z'’])")


def _wordlike(s: str, is_pre: bool) -> bool:
    """True when `s` (text around a number) is only words: units, currency, counters, copulas."""
    if not s or s.isspace():
        return True
    if re.search(r"[\\{}^_=<>*+|@#&\[\]~]", s):
        return False
    s2 = re.sub(r"(?<=[^\W\d_])/(?=[^\W\d_])", " ", s)  # km/h
    if not is_pre:
        s2 = re.sub(r"^\s*/(?=\s*[^\W\d_])", " ", s2)  # $18/day
    if "/" in s2:
        return False
    s2 = re.sub(r"-(?=[^\W\d_])", " ", s2)  # 5-year-old, well-known
    if "-" in s2:
        return False
    for w in _SINGLE_LETTER_RE.findall(s2):
        if not (is_pre and w in ("a", "A", "I")):
            return False
    return not (_EN_NUMWORD_RE.search(s2) or re.search(f"[{JA_NUMCHARS}]", s2))


def _split_equation(s: str) -> tuple[str, str | None] | None:
    """(the value side, the assigned symbol or None) of an equation chain that assigns a number;
    None when it states a relation instead. Text without '=' comes back unchanged."""
    parts = _EQ_SPLIT_RE.split(s)
    if len(parts) == 1:
        return s, None
    var = None
    for p in parts[:-1]:
        if not p.strip() or _LIST_SEP_RE.search(p):
            return None  # "x = 5, y = 3": two answers, not one number
        if SYMBOLIC_LHS_RE.fullmatch(p):
            if var is None:
                v = p.strip()
                var = v if _VAR_RE.fullmatch(v) else ""
        elif not _ARITH_LHS_RE.fullmatch(p):
            return None
    return parts[-1], var or None


@functools.lru_cache(maxsize=65536)
def parse_number(text: str) -> Num | None:
    """The single number `text` states (with its units, currency, percent), else None."""
    s = clean(text)
    if not s or len(s) > 200 or RELATION_RE.search(s):
        return None
    s = strip_unit_powers(s.replace("$", " "))
    split = _split_equation(s)
    if split is None:
        return None
    s, var = split
    if not s.isascii():
        for k, v in _JA_KANA.items():
            s = s.replace(k, v)
        s = _JA_RUN_RE.sub(_ja_sub, s)
        s = re.sub(r"(?:です|でした|になります|となります|だ|である)\s*[。.]?\s*$", "", s)
    if _EN_NUMWORD_RE.search(s):
        s = EN_RUN_RE.sub(_en_sub, s)
    m = _VALUE_RE.fullmatch(s.strip())
    if m is None or m["post"].lstrip().startswith("!") or not _wordlike(m["pre"], True) or not _wordlike(m["post"], False) or (m["sign"] and m["sign2"]):
        return None
    places = None
    try:
        if m["mi"] is not None or m["lf"] is not None:
            a, b = _FRAC_PARTS_RE.match(m["mf"] or m["lf"]).groups()
            fn, fd = _fraction(a), _fraction(b)
            if fd == 0 or (m["mi"] is not None and not 0 < fn < fd):
                return None
            v = fn / fd + (int(m["mi"]) if m["mi"] is not None else 0)
        elif m["mi2"] is not None:
            fn, fd = int(m["mn2"]), int(m["md2"])
            if fd == 0 or not 0 < fn < fd:
                return None
            v = int(m["mi2"]) + Fraction(fn, fd)
        elif m["sn"] is not None:
            fd = _fraction(m["sd"])
            if fd == 0:
                return None
            v = _fraction(m["sn"]) / fd
        else:
            v = _fraction(m["dec"])
            places = len(m["dec"].split(".", 1)[1]) if "." in m["dec"] else 0
    except (ValueError, ZeroDivisionError, AttributeError):
        return None
    if m["scale"]:
        v *= SCALES[m["scale"].lower()]
        places = None
    neg = (m["sign"] or m["sign2"]) == "-"
    return Num(-v if neg else v, bool(m["pct"]), places, var)


# --------------------------------------------------------------------------------------------
# Comparison under the precision policy
# --------------------------------------------------------------------------------------------


def _terminates(v: Fraction) -> bool:
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _rounds_to(x: Fraction, places: int | None, y: Fraction) -> bool:
    """Is the decimal x (written with `places` decimals) the rounding of the non-terminating y?"""
    if places is None or places < 3 or _terminates(y):
        return False
    if len(str(abs(x * 10**places).numerator)) < 3:  # significant digits
        return False
    return abs(x - y) * 2 * 10**places <= 1


def numbers_match(gold: Num, pred: Num) -> bool:
    """Equal numbers under the precision policy (module docstring)."""
    if gold.var and pred.var and gold.var != pred.var and len(gold.var) == len(pred.var) == 1:
        return False  # x = 5 is not y = 5
    golds = [(gold.value, gold.places)]
    preds = [(pred.value, pred.places)]
    if pred.percent and not gold.percent:
        preds.append((pred.value / 100, None if pred.places is None else pred.places + 2))
    if gold.percent and not pred.percent:
        golds.append((gold.value / 100, None if gold.places is None else gold.places + 2))
    for g, gp in golds:
        for p, pp in preds:
            if g == p or _rounds_to(p, pp, g) or _rounds_to(g, gp, p):
                return True
    return False
