"""Reading the final answer out of a model output (or a worked solution), as text.

`extract_answer` looks at the last <Answer> section first (the trace format, parsed by
`compass.trace_format`; also a lower-case <answer>, and the reply after a reasoning model's
</think>), then at the whole output; the <Problem> restatement is never read. In a region, first
hit wins:

1. an explicit final-answer statement ('#### 18', 'The final answer is 18', a line 'Answer: 18',
   '答え：18') made after the last box;
2. the last box group: the last ``\\boxed{}`` together with the boxes just before it that only
   connectors separate ('\\boxed{-2} and \\boxed{1}' -> '-2, 1');
3. a statement made anywhere ('#### …' first, then the last answer phrase that states a value:
   'the answer is …', 'Answer: …', 'A: …', '答えは…', '正解は…');
4. the whole region, when it is one short line that reads as a value ('18', 'eighteen');
5. the last math span ('$x \\lt 3$', '$\\frac{2}{3}$') when no value follows it, else the last value
   written in the text: a number with its sign, currency and percent, a fraction '2/3', a tuple or
   interval '(7, 6)' kept whole; never a digit inside a word ('AZYUK2A'), a subscript or an
   exponent ('m²', 'x^2'), and never a lone variable name ('The largest $n$ is 34.' -> 34);
6. English number words ('She makes eighteen dollars.').

Everything is linear-ish in the output: boxes come from one pass over the braces, and every
regex is anchored or bounded, so a runaway generation cannot stall grading.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from compass import trace_format
from compass.answers.numeric import EN_RUN_RE, JA_NUMCHARS, en_words_value, parse_number
from compass.answers.text import clean, prep, unwrap_math


class Extracted(str):
    """The extracted answer text; `.form` names the rule that found it (answer_boxed, boxed,
    final_statement, hashes, answer_phrase, whole, last_math, last_number, last_number_words;
    answer_tag:<rule> inside an <Answer> section without a box)."""

    form: str

    def __new__(cls, text: str, form: str):
        obj = super().__new__(cls, text)
        obj.form = form
        return obj


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------

_CONNECTOR_RE = re.compile(
    r"(?:\s|\$|,|;|&|\\[,;:! ]|\\\\|\\q?quad\b|\b(?:and|or)\b|\\text\s*\{\s*(?:and|or|,)?\s*\})*"
    r"(?:[A-Za-z](?:_\{?\w+\}?)?\s*=\s*)?",  # "$x = \boxed{2}$ and $x = \boxed{3}$"
    re.I,
)
_NESTED_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{(.*)\}", re.S)


def final_boxes(text: str) -> tuple[int, int, str] | None:
    """(start, end, answer) of the last box group: the last box and the boxes before it that are
    separated from it by connectors only (',', 'and', 'or', '$', spaces, '\\quad'), joined by ', '."""
    boxes = trace_format.answer_boxes(text)
    if not boxes:
        return None
    group = [boxes[-1]]
    for b in reversed(boxes[:-1]):
        gap = text[b[2] + 1 : group[-1][0]]
        if len(gap) > 40 or not _CONNECTOR_RE.fullmatch(gap):
            break
        group.append(b)
    group.reverse()
    parts = []
    for _, s, e in group:
        part = text[s:e].strip()
        while (m := _NESTED_BOX_RE.fullmatch(part)) and (inner := trace_format.boxed_spans(part, fbox=True)) and inner[0][1] == len(part) - 1:
            part = m.group(1).strip()  # \boxed{\boxed{5}}
        parts.append(part)
    return group[0][0], group[-1][2], ", ".join(parts)


def boxed_answer(text: str) -> str | None:
    """The answer the boxes of a text give (its last box group, see `final_boxes`), or None."""
    found = final_boxes(text) if text and ("\\boxed" in text or "\\fbox" in text) else None
    return None if found is None else found[2]


# --------------------------------------------------------------------------------------------
# Values in free text
# --------------------------------------------------------------------------------------------

_SIGN = r"(?:(?<![\w.,\d)])-|(?<=[\s(=:$])-|^-)?"
_NUMTOK = (
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d{1,3}(?: \d{3})+(?![\d/-])(?:\.\d+)?"
    r"|(?<!\d,)\d+,\d{1,2}(?![\d,])|\d+(?:\.\d+)?|\.\d+)"  # "2,74": a decimal comma (compare reads it)
)
_ELEM = rf"(?:{_SIGN}{_NUMTOK}(?:\s*/\s*\d+)?|-?\\infty|-?∞)"
# Not inside a word, a subscript or an exponent; not followed by an exponent.
VALUE_TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9_^.\\])(?<![_^]\{)(?:"
    rf"[(\[]\s*{_ELEM}(?:\s*,\s*{_ELEM})+\s*[)\]]"  # tuple / interval, whole
    r"|-?\\[dtc]?frac\s*(?:\{[^{}]{1,40}\}|\d)\s*(?:\{[^{}]{1,40}\}|\d)"  # \frac{2}{3}
    rf"|{_SIGN}{_NUMTOK}\s*/\s*{_NUMTOK}(?![\d/])"  # 2/3
    rf"|{_SIGN}[$¥€£]?\s?{_SIGN}{_NUMTOK}(?:[万億兆千][\d,]*)*(?:\s*(?:%|percent\b|million\b|billion\b|thousand\b))?"
    r")(?![\d])(?!\s*\^)",
    re.I,
)
# $$…$$ and \[…\] may span lines; inline $…$ and \(…\) may not, nor end in a currency sign ("$42 x 4 = $168").
_MATH_SPAN_RE = re.compile(
    r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$(?!\$)([^\n]+?)(?<![\\$])\$(?![\d$])|\\\(([^\n]+?)\\\)|\\\[(.+?)\\\]", re.S
)
_LONE_SYMBOL_RE = re.compile(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*")


def _span_content(m: re.Match) -> str:
    return next(g for g in m.groups() if g is not None).strip()


def _span_is_value(content: str) -> bool:
    """A math span that can be an answer: not a lone variable ('$n$'), not prose between two
    currency signs ('$18 a day and $'), holding a digit or a LaTeX value."""
    if len(content) > 200 or _LONE_SYMBOL_RE.fullmatch(content) or content.endswith(("=", "+", "-", "*", "\\")):
        return False
    bare = re.sub(r"\\[A-Za-z]+|\\text\s*\{[^{}]*\}", " ", content)
    if re.search(r"[A-Za-z]{3,}", bare):
        return False
    return bool(re.search(r"\d|\\(?:frac|sqrt|pi|infty)", content))


_SPAN_JOIN_RE = re.compile(r"\s*(?:,|,?\s*and|,?\s*or)\s*", re.I)


def _last_value(text: str) -> tuple[str | None, str | None]:
    tok = None
    for tok in VALUE_TOKEN_RE.finditer(text):
        pass
    spans: list[tuple[re.Match, str]] = []  # the last run of value spans joined by ',', 'and', 'or'
    for m in _MATH_SPAN_RE.finditer(text):
        content = _span_content(m)
        if _span_is_value(content):
            if not (spans and _SPAN_JOIN_RE.fullmatch(text, spans[-1][0].end(), m.start())):
                spans = []
            spans.append((m, content))
    if spans and (tok is None or tok.start() < spans[-1][0].end()):
        return ", ".join(c for _, c in spans[-5:]), "last_math"  # "$x = 2$ and $x = -3$": both
    if tok is not None:
        return tok.group().strip(), "last_number"
    # no digit anywhere: the last English number words, but not a lone "one" (a pronoun as often)
    runs = [m for m in EN_RUN_RE.finditer(text) if m.group().lower() not in ("one", "zero")]
    if runs and en_words_value(runs[-1].group()) is not None:
        return runs[-1].group(), "last_number_words"
    return None, None


# --------------------------------------------------------------------------------------------
# Statements: '#### …', 'the answer is …'
# --------------------------------------------------------------------------------------------

_HASH_RE = re.compile(r"####\s*([^\n]*)")
_PHRASE_RES = [
    re.compile(
        r"\b(?:final\s+)?answers?\b(?:\s+(?:to|for)\s+[^.\n:]{0,60}?)?\s*(?:is\b|was\b|would\s+be\b|will\s+be\b|should\s+be\b|:|=)\s*:?",
        re.I,
    ),
    re.compile(r"(?m)^[ \t>*#-]*A[ \t]*\**[ \t]*:"),
    re.compile(r"(?:最終的な)?(?:答え|答|解答|正解)\s*(?:は|:|=)\s*[、,]?"),
    re.compile(r"(?:最终)?答案\s*(?:是|为|:)\s*[,]?"),  # Chinese: 答案是 …
]
# Statements that override an earlier box: 'final answer', and a line that opens with 'Answer:'.
_FINAL_RE = re.compile(r"(?i:final\s+answer)|最終的な答え|^[ \t>*#_-]*(?:(?i:answer)|答え?)\**\s*[:：]")
_APPROX_RE = re.compile(r"(?i:approximately|about|around|roughly|nearly)\s*$|≈\s*$|約\s*$|\\approx\s*$")
_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_MC_LIKE_RE = re.compile(r"^\s*(?:\(([A-Ja-j])\)|([A-J])(?:$|[.):,]))")
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|。|\n|(?<![\\\d])!|[?！？]")  # not LaTeX's \! nor 5!
_HEDGE_RE = re.compile(r"\s*(?:or|and|to|~|〜|-|または|か|から|,)\s*[$¥€£]?\s*\d", re.I)


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
    if seg.endswith("!") and "$" not in seg and "\\" not in seg:
        seg = seg.rstrip("!").rstrip()  # "The answer is 18!": an exclamation in prose
    if not seg:
        return None
    if parse_number(seg) is not None or _MC_LIKE_RE.match(clean(seg)):
        return unwrap_math(seg)
    span = _MATH_SPAN_RE.search(seg)
    if span:  # the first math span, with the spans joined to it ("$12$ and $13$")
        parts, end = [_span_content(span)], span.end()
        for m in _MATH_SPAN_RE.finditer(seg, end):
            if len(parts) == 5 or not _SPAN_JOIN_RE.fullmatch(seg, end, m.start()):
                break
            parts.append(_span_content(m))
            end = m.end()
        return ", ".join(parts)
    if re.search(r"[\\^{}]", seg) or ("=" in seg and not re.search(r"[A-Za-z]{3,}", seg)):
        return seg  # math written without delimiters: "x^2 + 1", "x = 4, y = -1"
    toks = list(VALUE_TOKEN_RE.finditer(seg))
    if not toks:  # a short word answer ('yes', 'Evelyn'), never a sentence
        return None if strict or len(seg.split()) > 3 else seg
    first = toks[0]
    if len(toks) > 1 and _HEDGE_RE.match(seg, first.end()):
        return seg  # "18 or 19", "18 to 20": hedged, left ambiguous
    head = seg[: first.start()].strip().lower()
    if head in ("", "about", "approximately", "around", "roughly", "exactly", "only", "just", "total", "約", "およそ"):
        return first.group().strip()
    return toks[-1].group().strip()


_HAS_VALUE_RE = re.compile(rf"[\d{JA_NUMCHARS}]|\\|(?<!\\)\$|\b[A-J]\b")
_STEP_HEADER_RE = re.compile(r"(?:step[-\s]by[-\s]step|ステップごとの|段階的な)\s*$", re.I)


def _is_header(text: str, m: re.Match) -> bool:
    """'Answer:' / 'A:' / '答え：' (a colon form), or any phrase after 'Step-by-Step'."""
    g = m.group()
    return g.rstrip().endswith((":", "=")) or (g.lstrip(" \t>*#-").startswith("A") and ":" in g) or bool(
        _STEP_HEADER_RE.search(text, max(0, m.start() - 20), m.start())
    )


def _explains(line: str) -> bool:
    """A line that goes on for more than one sentence, the first not being a bare value."""
    line = line.strip(" \t*_:")
    cut = _SENTENCE_END_RE.search(line)
    if cut is None or not re.search(r"\d", line[cut.end() :]):
        return False
    first = clean(line[: cut.start()])
    starts_with_value = re.match(r"[\W_]*(?:about|approximately|around|roughly|約)?[\W_]*[-+]?[$¥€£]?\s*\d", first, re.I)
    return not (starts_with_value or _MC_LIKE_RE.match(first) or "\\" in first or EN_RUN_RE.match(first))


def _phrase(text: str) -> tuple[int, str, bool] | None:
    """(position, answer, approximate) of the last answer phrase that states one. A phrase followed by words
    only ('A: Let's think step by step.') or by a question ('the answer is 16?') is passed over."""
    matches = sorted((m for rx in _PHRASE_RES for m in rx.finditer(text)), key=lambda m: m.start(), reverse=True)
    for m in matches[:20]:
        line, _, after = text[m.end() : m.end() + 2000].partition("\n")
        if not line.strip(" \t*_:#"):  # a heading: "Final answer:\n18"
            line = next((ln for ln in after.split("\n")[:3] if ln.strip()), "")
        if not _HAS_VALUE_RE.search(line) and parse_number(line) is None:
            continue
        if _is_header(text, m) and _explains(line):
            continue  # "Step-by-Step Answer: Roger started with 5 balls. …": a heading, not an answer
        got = _refine(line)
        if got is None:
            continue
        at = line.find(got)
        if at >= 0 and re.match(r"[\s$*)]*[?？]", line[at + len(got) :]):
            continue
        return m.start(), got, at >= 0 and bool(_APPROX_RE.search(line[:at]))
    return None


class _Statement(NamedTuple):
    at: int
    answer: str
    form: str  # hashes or answer_phrase
    approximate: bool = False  # "the answer is approximately 4.67"


def _statement(text: str) -> _Statement | None:
    """The statement of the answer: the last '#### …' line, else the last answer phrase."""
    hashes = None
    for hashes in _HASH_RE.finditer(text):
        pass
    if hashes is not None:
        got = _refine(hashes.group(1), strict=True)
        if got:
            return _Statement(hashes.start(), got, "hashes")
    found = _phrase(text)
    return None if found is None else _Statement(found[0], found[1], "answer_phrase", found[2])


def _is_final(text: str, at: int) -> bool:
    """Is the statement at `at` an explicit final answer ('final answer …', a line 'Answer: …')?"""
    line_start = text.rfind("\n", 0, at) + 1
    return bool(_FINAL_RE.search(text[line_start : at + 40]))


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


def _looks_like_value(s: str) -> bool:
    if parse_number(s) is not None or _MC_LIKE_RE.match(s):
        return True
    if re.fullmatch(r"\s*(?:\$\$?[^$]+\$\$?|\\\(.+\\\)|\\\[.+\\\])\s*\.?\s*", s):
        return True  # one math span: "$p - q$"
    bare = re.sub(r"\\(?:begin|end)\{\w+\}|\\[A-Za-z]+", "", s)
    short_token = " " not in s.strip() and len(s) <= 30 and s.isascii()
    return ("\\" in s or short_token) and not re.search(r"[A-Za-z]{4,}", bare)


_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def _from_region(text: str) -> tuple[str | None, str | None]:
    boxes = final_boxes(text)
    stmt = _statement(text)
    if boxes is not None:
        if stmt is not None and stmt.at > boxes[1] and not stmt.approximate:
            if stmt.form == "hashes" or _is_final(text, stmt.at):
                return stmt.answer, "final_statement"
        return boxes[2], "boxed"
    if stmt is not None:
        return stmt.answer, stmt.form
    whole = text.strip()
    if whole and "\n" not in whole and len(whole) <= 80 and _looks_like_value(whole):
        if len(_PROSE_WORD_RE.findall(whole)) > 2:  # "So the total is $1,200." -> "$1,200"
            return _last_value(whole)
        return whole.rstrip(" ."), "whole"
    return _last_value(text)


_TAG_RE = re.compile(r"</?(?:Problem|Thinking|Answer|think|answer)>")


def readable_text(prediction: str) -> str:
    """The output as answers are read from it: Unicode folded (`prep`), the restatement of the
    problem (<Problem> content) removed."""
    text = prep(prediction)
    if "<" in text:
        sec = trace_format.locate(text)
        if sec.problem is not None:
            text = text[: sec.problem[0]] + text[sec.problem[1] :]
    return text


def extract_answer(prediction: str) -> Extracted | None:
    """The model's final answer as text (an `Extracted` str, `.form` naming the rule), or None."""
    if not isinstance(prediction, str) or not prediction.strip():
        return None
    text = readable_text(prediction)
    if "<" in text:
        regions = []  # (start, end, is an answer section)
        sec = trace_format.locate(text)
        if sec.answer is not None:
            regions.append((*sec.answer, True))
        i = text.rfind("<answer>")  # the lower-case <think>…</think><answer>…</answer> format
        if i >= 0:
            j = text.find("</answer>", i)
            regions.append((i + 8, len(text) if j < 0 else j, True))
        k = text.rfind("</think>")  # a reasoning model's reply after its thinking
        if k >= 0:
            regions.append((k + 8, len(text), False))
        for start, end, is_answer in regions:
            got, form = _from_region(text[start:end])
            if got:
                if is_answer:
                    form = "answer_boxed" if form == "boxed" else f"answer_tag:{form}"
                return Extracted(str(got), form)
        text = _TAG_RE.sub(" ", text)
    got, form = _from_region(text)
    return None if got is None else Extracted(str(got), form)


# --------------------------------------------------------------------------------------------
# Gold answers
# --------------------------------------------------------------------------------------------

_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_gold(answer) -> str:
    """The gold answer as a short string: the text after the last '####' of a GSM8K solution, the
    last box group of a MATH solution, the answer a longer worked solution states, else the
    stripped value; thousands commas dropped from a plain number ('1,000' -> '1000')."""
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
    elif "\\boxed" in s or "\\fbox" in s:
        s = boxed_answer(s) or s
    elif len(s) > 80 and len(s.split()) > 8 and not _looks_like_value(s):
        s = extract_answer(s) or s  # a worked solution given as the gold
    s = s.strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s
