"""The answer grader: a model's raw output against a gold answer, as pure functions.

    compass grade --predictions IN.jsonl --out OUT.jsonl

Extraction (`extract_answer`), in order, first hit wins:

1. the last non-empty ``\\boxed{…}`` inside the last ``<Answer>…</Answer>`` section; an <Answer>
   section without a box is searched with rules 3-6 before the rest of the text is looked at;
2. the last ``\\boxed{…}`` anywhere (the <Problem> restatement is never searched);
3. the last ``#### …`` line (GSM8K style);
4. the last answer phrase: "the (final) answer is …", "Answer: …", a line starting "A: …",
   "答えは…", "答え：…", "答：…", "正解は…", "解答：…";
5. the whole text, when it is one short line that reads as a value ("18", "eighteen", "\\frac{1}{2}");
6. the last number in the text.

Comparison (`is_correct`) decides with fast exact rules first and calls math-verify (sympy) only
when they cannot:

* multiple-choice gold ("C", "(C)", "\\text{(C)}"): the letter of the prediction ("(C)", "C)", "C. 24");
* equal after light normalisation (whitespace, ``\\left``/``\\right``, ``\\text{}``, ``\\dfrac``);
* both sides read as one number (thousands separators, currency and unit words, ``%``, fractions
  ``a/b`` / ``\\frac{a}{b}`` / mixed numbers, English and Japanese number words, "5 million",
  "7万"): exact rational comparison; a percent on one side only also matches value/100; a decimal
  with >= 3 places matches a non-terminating fraction it rounds from;
* otherwise math-verify on both (``\\boxed{}``-wrapped), under a wall-clock deadline.

math-verify's own timeouts use ``signal.alarm`` and raise ValueError outside the main thread, so it
is always called with its timeouts off; this module sets its own deadline with ``setitimer`` in the
main thread of any process (worker processes included), leaves any timer the caller has armed
alone, and outside the main thread relies on input guards only (length, huge exponents/factorials).
"""

from __future__ import annotations

import functools
import re
import signal
import threading
import unicodedata
from contextlib import contextmanager
from fractions import Fraction
from typing import Iterable, NamedTuple

from compass import trace_format
from compass.io import CompassError, iter_jsonl, write_jsonl

__all__ = [
    "Extracted",
    "extract_answer",
    "normalize_gold",
    "parse_number",
    "answers_match",
    "grade_one",
    "is_correct",
    "grade_rows",
    "add_arguments",
    "main",
]

MATH_VERIFY_TIMEOUT_S = 3.0  # wall-clock budget of one math-verify comparison (parse both + verify)
MAX_MATH_VERIFY_CHARS = 400  # longer candidates are not answers: never handed to sympy


# --------------------------------------------------------------------------------------------
# Text preparation
# --------------------------------------------------------------------------------------------

_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅛": "1/8"}
_VULGAR_RE = re.compile(r"(\d?)\s*([½⅓⅔¼¾⅕⅛])")
_SUPER_RE = re.compile(r"[²³]")


def _prep(text: str) -> str:
    """NFKC (full-width digits and punctuation become ASCII), vulgar fractions and superscripts made
    explicit first so that NFKC does not glue them onto neighbouring digits."""
    if not text.isascii():
        text = _SUPER_RE.sub(lambda m: "^2" if m.group() == "²" else "^3", text)
        text = _VULGAR_RE.sub(lambda m: (m.group(1) + " " if m.group(1) else "") + _VULGAR[m.group(2)], text)
        text = unicodedata.normalize("NFKC", text)
        text = text.replace("⁄", "/").replace("−", "-").replace("–", "-").replace("÷", "/").replace("×", "*")
    return text


_PROBLEM_RE = re.compile(r"<Problem>.*?</Problem>", re.S | re.I)
_ANSWER_OPEN_RE = re.compile(r"<Answer>", re.I)
_ANSWER_CLOSE_RE = re.compile(r"</Answer>", re.I)


def _strip_problem(text: str) -> str:
    return _PROBLEM_RE.sub(" ", text) if "<" in text else text


def _answer_section(text: str) -> str | None:
    """Content of the last <Answer> section (to </Answer> or the end of the text)."""
    opens = list(_ANSWER_OPEN_RE.finditer(text))
    if not opens:
        return None
    start = opens[-1].end()
    close = _ANSWER_CLOSE_RE.search(text, start)
    return text[start : close.start() if close else len(text)]


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE_RE = re.compile(r"\\boxed\s+([^\s{$]+)")


def _last_boxed(text: str) -> str | None:
    """Content of the last non-empty, balanced ``\\boxed{…}`` (also ``\\fbox{}``, ``\\boxed 5``)."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    best: tuple[int, str] | None = None
    for m in reversed(list(_BOX_RE.finditer(text))):
        depth, j = 1, m.end()
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth == 0:
            content = text[m.end() : j].strip()
            if content:
                best = (m.start(), content)
                break
    for m in _BOX_BARE_RE.finditer(text):  # rare "\boxed 5" form
        if best is None or m.start() > best[0]:
            best = (m.start(), m.group(1))
    return None if best is None else best[1]


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

_EN_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_EN_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_EN_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_EN_WORDS = sorted([*_EN_UNITS, *_EN_TENS, "hundred", *_EN_SCALES], key=len, reverse=True)
_EN_WORD = "(?:" + "|".join(_EN_WORDS) + ")"
_EN_RUN_RE = re.compile(rf"\b{_EN_WORD}(?:(?:\s+and\s+|\s+|-){_EN_WORD})*\b", re.I)
_EN_NUMWORD_RE = re.compile(rf"\b{_EN_WORD}\b", re.I)


def _en_sub(m: re.Match) -> str:
    run = m.group()
    if run.split()[0].lower() in ("hundred", *_EN_SCALES):  # "5 million": a scale of a number
        return run
    v = _en_words_value(run)
    return run if v is None else str(v)


def _en_words_value(run: str) -> int | None:
    total = current = 0
    last = None
    for w in re.split(r"[\s-]+", run.lower()):
        if w == "and" or not w:
            continue
        if w in _EN_UNITS:
            v = _EN_UNITS[w]
            if last in ("unit",) or (last == "tens" and v >= 10) or (last == "tens" and v == 0):
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
        elif w in _EN_SCALES:
            if last == "scale":
                return None
            total += (current or 1) * _EN_SCALES[w]
            current = 0
            last = "scale"
        else:
            return None
    return total + current


_JA_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_JA_SMALL = {"十": 10, "百": 100, "千": 1000}
_JA_BIG = {"万": 10**4, "億": 10**8, "兆": 10**12}
_JA_NUMCHARS = "".join([*_JA_DIGITS, *_JA_SMALL, *_JA_BIG])
_JA_RUN_RE = re.compile(rf"[0-9.,]*[{_JA_NUMCHARS}][0-9.,{_JA_NUMCHARS}]*")
_JA_TOKEN_RE = re.compile(rf"\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|[{_JA_NUMCHARS}]")
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
    tail = m.group()[len(run) :]
    v = _ja_value(run)
    return m.group() if v is None else _fmt(v) + tail


def _fmt(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{v.numerator}/{v.denominator}"


_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_FARG = rf"(?:\{{\s*[-+]?{_NUM}\s*\}}|\d)"
_LFRAC = rf"\\frac\s*{_FARG}\s*{_FARG}"
_VALUE_RE = re.compile(
    r"(?P<pre>[^\d]*?)"
    r"(?P<sign>[-+]?)\s*(?:[$¥€£₹]|USD|JPY)?\s*(?P<sign2>[-+]?)\s*"
    r"(?P<num>"
    rf"(?P<mi>\d+)\s*(?P<mf>{_LFRAC})"  # mixed number 1\frac{4}{5}
    rf"|(?P<mi2>\d+)\s+(?P<mn2>\d+)\s*/\s*(?P<md2>\d+)"  # mixed number 1 1/2
    rf"|(?P<lf>{_LFRAC})"
    rf"|(?P<sn>{_NUM})\s*/\s*(?P<sd>{_NUM})"
    rf"|(?P<dec>{_NUM})"
    r")"
    r"\s*(?P<scale>thousand|million|billion|trillion)?"
    r"\s*(?P<pct>%|percent\b|per\s*cent\b|パーセント)?"
    r"(?P<post>[^\d]*)",
    re.I,
)
_FRAC_PARTS_RE = re.compile(rf"\\frac\s*({_FARG})\s*({_FARG})")
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}")
_UNIT_POW_RE = re.compile(r"(?<=[A-Za-z]{2})\s*\^\s*\{?\s*[23]\s*\}?")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|°")
_LATEX_THIN_COMMA_RE = re.compile(r"(?<=\d),\\!\s*(?=\d)")  # 32,\!348
_LATEX_THIN_SPACE_RE = re.compile(r"(?<=\d)\\[,!]\s*(?=\d{3})")
_DTFRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DELIMS_RE = re.compile(r"^\s*\\[\[(]|\\[\])]\s*$")
_SPACING_RE = re.compile(r"\\[!,;: ]|\\quad\b|\\qquad\b|~")
_SIZING_RE = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![A-Za-z])|\\(?:displaystyle|textstyle)\b")


@functools.lru_cache(maxsize=65536)
def _clean(s: str) -> str:
    """Light, meaning-preserving LaTeX/markdown clean-up shared by all comparisons."""
    s = _prep(s)
    s = s.replace("\\$", "$").replace("\\%", "%").replace("**", "").replace("{,}", ",")
    if "\\" in s:
        s = _LATEX_THIN_COMMA_RE.sub(",", s)
        s = _LATEX_THIN_SPACE_RE.sub("", s)  # 10\,000
        s = _SPACING_RE.sub(" ", s)
        s = _SIZING_RE.sub("", s)
        s = _DTFRAC_RE.sub(r"\\frac", s)
        s = _DEGREE_RE.sub("", s)
        for _ in range(2):
            s = _TEXT_CMD_RE.sub(lambda m: " " + m.group(1) + " ", s)
        s = _DELIMS_RE.sub("", s)
    else:
        s = s.replace("°", "").replace("~", " ")
    s = s.strip()
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]):
        s = s[1:-1].strip()
    return s.rstrip(" .。!,;:").lstrip(" :")


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


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
    if _EN_NUMWORD_RE.search(s2) or re.search(f"[{_JA_NUMCHARS}]", s2):
        return False
    return True


class Num(NamedTuple):
    value: Fraction
    percent: bool
    places: int | None  # decimal places when written as a plain decimal, else None


def _to_fraction(tok: str) -> Fraction:
    return Fraction(tok.replace(",", ""))


def _farg(a: str) -> Fraction:
    return _to_fraction(a.strip("{} ").replace(" ", ""))


def _places(tok: str) -> int:
    return len(tok.split(".", 1)[1]) if "." in tok else 0


_EQ_SPLIT_RE = re.compile(r"=|≈|\\approx\b|\\simeq\b")


@functools.lru_cache(maxsize=65536)
def parse_number(text: str) -> Num | None:
    """The single number `text` states (with its units, currency, percent), else None."""
    s = _clean(text)
    if not s or len(s) > 200:
        return None
    s = s.replace("$", " ")
    s = _UNIT_POW_RE.sub("", s)
    parts = _EQ_SPLIT_RE.split(s)
    if len(parts) > 1 and not re.search(r"[,;、。]|\band\b|\.\s", parts[-2]):
        s = parts[-1]
    if not s.isascii():
        for k, v in _JA_KANA.items():
            s = s.replace(k, v)
        s = _JA_RUN_RE.sub(_ja_sub, s)
        s = re.sub(r"(?:です|でした|になります|となります|だ|である)\s*[。.]?\s*$", "", s)
    if _EN_NUMWORD_RE.search(s):
        s = _EN_RUN_RE.sub(_en_sub, s)
    s = s.strip()
    m = _VALUE_RE.fullmatch(s)
    if m is None or not _wordlike(m["pre"], True) or not _wordlike(m["post"], False):
        return None
    if m["sign"] and m["sign2"]:
        return None
    neg = (m["sign"] or m["sign2"]) == "-"
    places = None
    try:
        if m["mi"] is not None:
            a, b = _FRAC_PARTS_RE.match(m["mf"]).groups()
            fn, fd = _farg(a), _farg(b)
            if fd == 0 or not (0 < fn < fd):
                return None
            v = int(m["mi"]) + fn / fd
        elif m["mi2"] is not None:
            fn, fd = int(m["mn2"]), int(m["md2"])
            if fd == 0 or not (0 < fn < fd):
                return None
            v = int(m["mi2"]) + Fraction(fn, fd)
        elif m["lf"] is not None:
            a, b = _FRAC_PARTS_RE.match(m["lf"]).groups()
            fd = _farg(b)
            if fd == 0:
                return None
            v = _farg(a) / fd
        elif m["sn"] is not None:
            fd = _to_fraction(m["sd"])
            if fd == 0:
                return None
            v = _to_fraction(m["sn"]) / fd
        else:
            v = _to_fraction(m["dec"])
            places = _places(m["dec"])
    except (ValueError, ZeroDivisionError, AttributeError):
        return None
    if m["scale"]:
        v *= _SCALES[m["scale"].lower()]
        places = None
    return Num(-v if neg else v, bool(m["pct"]), places)


def _close(a: Num, av: Fraction, bv: Fraction, b: Num) -> bool:
    if av == bv:
        return True
    # A decimal with >= 3 places matches a fraction it is the rounding of (4.667 vs 14/3), but
    # never a value that itself has that few places (32.998 is not 33).
    for x, xv, y, yv in ((a, av, b, bv), (b, bv, a, av)):
        p = x.places
        if p is not None and p >= 3 and (yv * 10**p).denominator != 1:
            if abs(xv - yv) * 2 * 10**p <= 1:
                return True
    return False


def _numbers_match(gold: Num, pred: Num) -> bool:
    golds = [gold.value]
    preds = [pred.value]
    if pred.percent and not gold.percent:
        preds.append(pred.value / 100)  # 25% vs 25 and vs 0.25
    if gold.percent and not pred.percent:
        golds.append(gold.value / 100)
    return any(_close(gold, g, p, pred) for g in golds for p in preds)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


class Extracted(str):
    """The extracted answer text; `.form` says which rule found it (answer_boxed, boxed, hashes,
    answer_phrase, whole, last_number, answer_tag:<rule>)."""

    form: str

    def __new__(cls, text: str, form: str):
        obj = super().__new__(cls, text)
        obj.form = form
        return obj


_HASH_RE = re.compile(r"####\s*([^\n]*)")
_PHRASE_RES = [
    re.compile(
        r"\b(?:final\s+)?answers?\b(?:\s+(?:to|for)\s+[^.\n:]{0,60}?)?\s*(?:is\b|was\b|would\s+be\b|will\s+be\b|should\s+be\b|:|=)\s*:?",
        re.I,
    ),
    re.compile(r"(?m)^[ \t>*#-]*A[ \t]*\**[ \t]*:"),
    re.compile(r"(?:最終的な)?(?:答え|答|解答|正解)\s*(?:は|:|=)\s*[、,]?"),
]
_NUM_TOKEN_RE = re.compile(
    r"(?:(?<![\w.,\d])-|(?<=[\s(=:$])-|^-)?"
    r"[$¥€£]?\s?"
    r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[万億兆千][\d,]*)*"
    r"(?:\s*(?:%|percent\b|million\b|billion\b|thousand\b))?",
    re.I,
)
_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_MATH_SPAN_RE = re.compile(r"(?<!\\)\$\$?(.+?)(?<!\\)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\]")
_MC_LIKE_RE = re.compile(r"^\s*(?:\(([A-Ja-j])\)|([A-J])(?:$|[.):,]))")
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|。|\n|(?<![\\\d])!|[?！？]")  # not LaTeX's \! nor 5!


def _refine(seg: str, strict: bool = False) -> str | None:
    """The answer inside the text that follows an answer marker ('#### …', 'answer is …').
    `strict`: only a number or math (a '#### Final Answer' markdown heading is no answer)."""
    seg = seg.lstrip(" \t*_:")
    if not seg.strip():
        return None
    seg = seg.strip().split("\n", 1)[0]
    # a sentence end (not a decimal point) closes the answer; inside $…$ a '.' may not be one
    m = _SENTENCE_END_RE.search(seg)
    if m and len(_DOLLAR_RE.findall(seg, 0, m.start())) % 2 == 0:
        seg = seg[: m.start()]
    seg = seg.strip(" \t*_,;:")
    if not seg:
        return None
    if parse_number(seg) is not None or _MC_LIKE_RE.match(_clean(seg)):
        return seg
    span = _MATH_SPAN_RE.search(seg)
    if span:
        return next(g for g in span.groups() if g is not None).strip()
    if re.search(r"[\\^{}]", seg):
        return seg
    toks = list(_NUM_TOKEN_RE.finditer(seg))
    if not toks:  # a short word answer ('yes', 'Evelyn'), never a sentence
        return None if strict or len(seg.split()) > 3 else seg
    first = toks[0]
    after = seg[first.end() :]
    if len(toks) > 1 and re.match(r"\s*(?:or|and|to|~|〜|-|または|か|から|,)\s*[$¥€£]?\s*\d", after, re.I):
        return seg  # "18 or 19", "18 to 20": hedged, left ambiguous
    head = seg[: first.start()].strip().lower()
    if head in ("", "about", "approximately", "around", "roughly", "exactly", "only", "just", "total", "約", "およそ"):
        return first.group().strip()
    return toks[-1].group().strip()


_HAS_VALUE_RE = re.compile(rf"[\d{_JA_NUMCHARS}]|\\|(?<!\\)\$|\b[A-J]\b")


_STEP_HEADER_RE = re.compile(r"(?:step[-\s]by[-\s]step|ステップごとの|段階的な)\s*$", re.I)


def _is_header(text: str, m: re.Match) -> bool:
    """'Answer:' / 'A:' / '答え：' (a colon form), or any phrase after 'Step-by-Step'."""
    return m.group().rstrip().endswith((":", "=")) or m.group().lstrip(" \t>*#-").startswith("A") and ":" in m.group() or bool(
        _STEP_HEADER_RE.search(text, max(0, m.start() - 20), m.start())
    )


def _explains(line: str) -> bool:
    """A line that goes on for more than one sentence, the first not being a bare value."""
    line = line.strip(" \t*_:")
    cut = _SENTENCE_END_RE.search(line)
    if cut is None or not re.search(r"\d", line[cut.end() :]):
        return False
    first = _clean(line[: cut.start()])
    starts_with_value = re.match(r"[\W_]*(?:about|approximately|around|roughly|約)?[\W_]*[-+]?[$¥€£]?\s*\d", first, re.I)
    return not (starts_with_value or _MC_LIKE_RE.match(first) or "\\" in first or _EN_RUN_RE.match(first))


def _phrase_match(text: str) -> str | None:
    """The answer after the last answer phrase that states one. A phrase followed by words only
    ('A: Let's think step by step.') or by a question ('the answer is 16?') is passed over."""
    matches = sorted((m for rx in _PHRASE_RES for m in rx.finditer(text)), key=lambda m: m.start(), reverse=True)
    for m in matches[:20]:
        rest = text[m.end() :]
        line, _, after = rest.partition("\n")
        if not line.strip(" \t*_:#"):  # a heading: "Final answer:\n18"
            line = next((ln for ln in after.split("\n")[:3] if ln.strip()), "")
        if not _HAS_VALUE_RE.search(line) and parse_number(line) is None:
            continue
        if _is_header(text, m) and _explains(line):
            continue  # "Step-by-Step Answer: Roger started with 5 balls. …": a heading, not an answer
        got = _refine(line)
        if got is None:
            continue
        tail = line[line.find(got) + len(got) :] if got in line else ""
        if re.match(r"[\s$*)]*[?？]", tail):
            continue
        return got
    return None


def _looks_like_value(s: str) -> bool:
    if parse_number(s) is not None or _MC_LIKE_RE.match(s):
        return True
    if re.fullmatch(r"\s*(?:\$\$?[^$]+\$\$?|\\\(.+\\\)|\\\[.+\\\])\s*\.?\s*", s):
        return True  # one math span: "$p - q$"
    bare = re.sub(r"\\(?:begin|end)\{\w+\}|\\[A-Za-z]+", "", s)
    short_token = " " not in s.strip() and len(s) <= 30 and s.isascii()
    return ("\\" in s or short_token) and not re.search(r"[A-Za-z]{4,}", bare)


def _extract_plain(text: str) -> tuple[str | None, str | None]:
    hashes = list(_HASH_RE.finditer(text))
    if hashes:
        got = _refine(hashes[-1].group(1), strict=True)
        if got:
            return got, "hashes"
    got = _phrase_match(text)
    if got:
        return got, "answer_phrase"
    whole = text.strip()
    if whole and "\n" not in whole and len(whole) <= 80 and _looks_like_value(whole):
        return whole.rstrip(" ."), "whole"
    toks = list(_NUM_TOKEN_RE.finditer(text))
    if toks:
        return toks[-1].group().strip(), "last_number"
    # no digit anywhere: the last English number words ("She makes eighteen dollars."), but not a
    # lone "one" (a pronoun as often as a number)
    runs = [m for m in _EN_RUN_RE.finditer(text) if m.group().lower() not in ("one", "zero")]
    if runs and _en_words_value(runs[-1].group()) is not None:
        return runs[-1].group(), "last_number_words"
    return None, None


def _extract(prediction: str) -> tuple[str | None, str | None]:
    if not isinstance(prediction, str) or not prediction.strip():
        return None, None
    text = _strip_problem(_prep(prediction))
    section = _answer_section(text)
    if section is not None:
        box = _last_boxed(section)
        if box:
            return box, "answer_boxed"
        got, form = _extract_plain(section)
        if got:
            return got, f"answer_tag:{form}"
    box = _last_boxed(text)
    if box:
        return box, "boxed"
    return _extract_plain(_ANSWER_OPEN_RE.sub(" ", _ANSWER_CLOSE_RE.sub(" ", text)))


def extract_answer(prediction: str) -> Extracted | None:
    """The model's final answer as text (an `Extracted` str, `.form` naming the rule), or None."""
    got, form = _extract(prediction)
    return None if got is None else Extracted(got, form)


# --------------------------------------------------------------------------------------------
# Gold answers
# --------------------------------------------------------------------------------------------

_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_gold(answer) -> str:
    """The gold answer as a short string: the text after the last '####' of a GSM8K solution, the
    last \\boxed{} of a MATH solution, else the stripped value; thousands commas dropped from a
    plain number ('1,000' -> '1000')."""
    if answer is None:
        return ""
    if isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, (int, float)):
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        return str(answer)
    s = str(answer)
    if "####" in s:
        s = s.rsplit("####", 1)[1]
    elif "\\boxed" in s:
        s = _last_boxed(s) or s
    s = s.strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------

_MC_GOLD_RE = re.compile(r"\(?([A-J])\)?")
_MC_PRED_RE = re.compile(
    r"^(?:(?i:option|choice|answer)\s*(?i:is)?\s*[:：]?\s*)?(?:\(([A-Ja-j])\)|([A-J])(?=$|\s*[.):,]|\s*$))"
)


def _mc_letter(s: str) -> str | None:
    m = _MC_PRED_RE.match(_clean(s).replace("$", "").strip())
    if not m:
        return None
    return (m.group(1) or m.group(2)).upper()


@functools.lru_cache(maxsize=65536)
def _norm_str(s: str) -> str:
    s = _clean(s).replace("$", "")
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    return s.lower() if re.fullmatch(r"[^\W\d_]{2,}", s) else s


def _text_gold(gold: str) -> str | None:
    """Lower-cased word(s) when the gold is plain text (\\text{Evelyn}, east), else None."""
    g = _clean(gold).replace("$", "").strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z ]*[A-Za-z]", g) and ("\\text" in gold or "\\mbox" in gold or len(g) >= 4):
        return " ".join(g.lower().split())
    return None


def _mv_worth(cand: str) -> bool:
    """For a numeric gold: only hand math-looking candidates to math-verify ('\\sqrt{4}', '2^3')."""
    c = _TEXT_CMD_RE.sub(" ", _clean(cand))
    c = re.sub(r"\\[A-Za-z]+", " ", c)
    if re.search(r"[^\W\d_]{2,}", c):
        return False
    return bool(re.search(r"\d", c)) or "\\" in cand


def answers_match(candidate: str | None, gold: str) -> bool:
    """Does an extracted answer equal a normalized gold answer?"""
    if candidate is None or not gold:
        return False
    cand = str(candidate).strip()
    if not cand:
        return False
    mc = _MC_GOLD_RE.fullmatch(_clean(gold).replace("$", "").strip())
    if mc:
        return _mc_letter(cand) == mc.group(1)
    if _norm_str(cand) == _norm_str(gold):
        return True
    g = parse_number(gold)
    if g is not None:
        p = parse_number(cand)
        if p is not None:
            return _numbers_match(g, p)
        return _mv_worth(cand) and _math_verify_equal(gold, cand)
    text = _text_gold(gold)
    if text is not None:
        c = " ".join(_clean(cand).replace("$", "").lower().split())
        return c == text or re.sub(r"^(?:the|a|an)\s+", "", c) == text
    return _math_verify_equal(gold, cand)


class Grade(NamedTuple):
    correct: bool
    extracted: str | None
    form: str | None


def grade_one(prediction: str, gold) -> Grade:
    """Grade one prediction against a (raw or normalized) gold answer."""
    g = normalize_gold(gold)
    got, form = _extract(prediction)
    if _MC_GOLD_RE.fullmatch(_clean(g).replace("$", "").strip()) and (got is None or _mc_letter(got) is None):
        alt = _mc_fallback(prediction)
        if alt is not None:
            got, form = alt, "choice_phrase"
    return Grade(answers_match(got, g), got, form)


_MC_FALLBACK_RES = [
    # "answer is (C)", "Answer: C", "ANS:D", "Ans A", "Answer - E", "option C", "答えは C"
    re.compile(r"\b(?i:answer|ans|option|choice)\b\s*(?i:is\b)?\s*[:：=-]?\s*\**\s*\(?([A-J])\)?(?![A-Za-z0-9])"),
    re.compile(r"(?:答え|正解|解答)\s*(?:は|:)\s*\(?([A-J])\)?"),
    # "(C) is the correct answer", "D is the answer", "Hence (A) is correct"
    re.compile(r"(?<![A-Za-z])\(?([A-J])\)?\s+is\s+(?:the\s+)?(?:(?i:correct|right)\s+)?(?i:answer|option|choice|correct|right)\b"),
    # a last line that is only a letter: "D", "E)", "(B)."
    re.compile(r"(?:^|\n)\s*\(?([A-J])\)?[.)]?\s*$"),
]


def _mc_fallback(prediction: str) -> str | None:
    """A choice letter stated in words, the latest in the text."""
    text = _strip_problem(_prep(prediction))
    best: tuple[int, str] | None = None
    for rx in _MC_FALLBACK_RES:
        for m in rx.finditer(text):
            if best is None or m.start() >= best[0]:
                best = (m.start(), m.group(1))
    return None if best is None else best[1]


def is_correct(prediction: str, gold) -> bool:
    """True when the model output `prediction` answers `gold` (a GSM8K solution, '#### 72', a
    bare value, a MATH LaTeX answer or a multiple-choice letter)."""
    return grade_one(prediction, gold).correct


# --------------------------------------------------------------------------------------------
# math-verify, behind a deadline
# --------------------------------------------------------------------------------------------


class _Deadline(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that sympy's `except Exception` cannot
    swallow it."""


@contextmanager
def _deadline(seconds: float):
    """Interrupt the block after `seconds` (main thread only; elsewhere signals are unavailable).
    A timer the caller already armed is left untouched (and this block then runs unbounded)."""
    usable = (
        seconds
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if usable:
        try:
            usable = signal.getitimer(signal.ITIMER_REAL)[0] == 0
        except (OSError, ValueError):
            usable = False
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


_MV_DANGER_RE = re.compile(
    r"\^\s*\{?\s*\(?\s*[-+]?\d{4,}"  # 2^{10000}
    r"|\^\s*\{[^{}]*\^"  # power towers
    r"|\d{4,}\s*!"  # 1000!
    r"|\\(?:int|sum|prod|lim|iint|oint)\b"
)

_mv_stats = {"calls": 0, "timeouts": 0}


@functools.lru_cache(maxsize=1)
def _mv():
    import math_verify
    import math_verify.grader
    import math_verify.parser

    # We run math-verify with its signal-based timeouts off (they raise in threads) and provide
    # our own deadline; silence its one-time "timeout is disabled" warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    return math_verify


def _mv_payload(s: str) -> str:
    s = s.strip()
    m = re.fullmatch(r"\$\$?(.*?)\$\$?|\\\((.*)\\\)|\\\[(.*)\\\]", s, re.S)
    if m:
        s = next(g for g in m.groups() if g is not None).strip()
    return s.rstrip(" .")


@functools.lru_cache(maxsize=16384)
def _mv_parse(s: str):
    mv = _mv()
    return tuple(mv.parse("\\boxed{" + s + "}", parsing_timeout=None))


@functools.lru_cache(maxsize=65536)
def _math_verify_equal(gold: str, cand: str) -> bool:
    g, c = _mv_payload(gold), _mv_payload(cand)
    if not g or not c or len(c) > MAX_MATH_VERIFY_CHARS or len(g) > MAX_MATH_VERIFY_CHARS:
        return False
    if _MV_DANGER_RE.search(c) or not _balanced(c):
        return False
    _mv_stats["calls"] += 1
    mv = _mv()  # imported before the deadline is armed: an interrupted import would stay broken
    try:
        with _deadline(MATH_VERIFY_TIMEOUT_S):
            gp = _mv_parse(g)
            cp = _mv_parse(c)
            if not gp or not cp:
                return False
            return bool(mv.verify(list(gp), list(cp), timeout_seconds=None))
    except _Deadline:
        _mv_stats["timeouts"] += 1
        return False
    except Exception:  # a sympy failure is a non-match, never a crash of the grader
        return False


# --------------------------------------------------------------------------------------------
# Rows and the CLI
# --------------------------------------------------------------------------------------------


def grade_rows(
    rows: Iterable[dict], *, prediction_field: str = "prediction", answer_field: str = "answer"
) -> tuple[list[dict], dict]:
    """Each row copied with `correct` (bool), `extracted` (str or None) and `extracted_form`; and
    the summary {n, correct, accuracy, well_formed, well_formed_rate, forms}."""
    graded: list[dict] = []
    n_correct = n_well = 0
    forms: dict[str, int] = {}
    for i, row in enumerate(rows, 1):
        gold = row.get(answer_field)
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            raise CompassError(f"row {i}: empty gold answer in field {answer_field!r}")
        pred = row.get(prediction_field)
        pred = pred if isinstance(pred, str) else ("" if pred is None else str(pred))
        g = grade_one(pred, gold)
        well = trace_format.is_well_formed(pred)
        n_correct += g.correct
        n_well += well
        forms[g.form or "none"] = forms.get(g.form or "none", 0) + 1
        out = dict(row)
        out["correct"] = bool(g.correct)
        out["extracted"] = None if g.extracted is None else str(g.extracted)
        out["extracted_form"] = g.form
        graded.append(out)
    n = len(graded)
    summary = {
        "n": n,
        "correct": n_correct,
        "accuracy": n_correct / n if n else 0.0,
        "well_formed": n_well,
        "well_formed_rate": n_well / n if n else 0.0,
        "forms": dict(sorted(forms.items())),
    }
    return graded, summary


def add_arguments(parser) -> None:
    parser.add_argument("--predictions", required=True, metavar="IN.jsonl", help="JSONL rows with a model output and a gold answer")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="the rows again, with `correct`, `extracted`, `extracted_form`")
    parser.add_argument("--prediction-field", default="prediction", metavar="NAME", help="field holding the model output (default: prediction)")
    parser.add_argument("--answer-field", default="answer", metavar="NAME", help="field holding the gold answer (default: answer)")


def main(args, cfg=None) -> dict:
    pf, af = args.prediction_field, args.answer_field
    rows = list(iter_jsonl(args.predictions, required=(pf, af)))
    if not rows:
        raise CompassError(f"{args.predictions}: no rows to grade")
    try:
        graded, summary = grade_rows(rows, prediction_field=pf, answer_field=af)
    except CompassError as e:
        raise CompassError(f"{args.predictions}: {e}") from None
    write_jsonl(args.out, graded)
    n = summary["n"]
    print(f"accuracy: {summary['accuracy']:.4f} ({summary['correct']}/{n})")
    print(f"well-formed: {summary['well_formed_rate']:.4f} ({summary['well_formed']}/{n})")
    return summary
