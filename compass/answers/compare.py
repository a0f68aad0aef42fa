"""Is an extracted answer the gold answer? Domain rules first, math-verify for the rest.

`answers_match(answer, gold)` reads what kind of answer the gold is and compares accordingly:

* a choice letter ('C', '(C)', '\\text{(C)}'): the letter the answer names;
* the same text after light normalisation (spacing, ``\\left``/``\\right``, ``\\dfrac``, text
  wrappers, ``\\geq``/``\\ge``/``>=``): equal;
* a relation ('x \\ge 5', 'a + 3z = 0', 'x \\ne 3'): only a relation can equal it, and math-verify
  compares the two as relations (same kind, or flipped; equations also up to scaling, by solving);
  an assignment ('x = 5', 'y = 2x + 3') also equals its value;
* a computation ('\\sqrt{50} = 5\\sqrt{2}', '9 \\times 2 = 18'): its result;
* a number: an answer that reads as one number is compared exactly (`compass.answers.numeric`:
  units, separators, percent, degrees, words, the precision policy); an answer that states a
  relation never equals a number ('x \\le 5' is not 5); other math goes to math-verify ('\\sqrt{4}');
* a word ('\\text{Evelyn}', 'east'): the same word, case and articles aside (math-verify would take
  'Nevely' for 'Evelyn': they are the same letters multiplied);
* anything else (expressions, sets, tuples, intervals, matrices, several answers): math-verify,
  with 'and'/'or' between values read as a list, so that several answers compare as a set.
"""

from __future__ import annotations

import functools
import re

from compass.answers import sandbox
from compass.answers.choices import choice_letter, gold_choice
from compass.answers.numeric import RELATION_RE, SYMBOLIC_LHS_RE, numbers_match, parse_number
from compass.answers.text import TEXT_CMD_RE, clean

MAX_ANSWER_CHARS = 1000  # a longer "answer" is a runaway generation, never compared

_RELATION_TOKENS = [
    (re.compile(r"\\geq(?:slant)?(?![A-Za-z])|>=|≥"), r"\\ge"),
    (re.compile(r"\\leq(?:slant)?(?![A-Za-z])|<=|≤"), r"\\le"),
    (re.compile(r"\\neq(?![A-Za-z])|!=|≠"), r"\\ne"),
    (re.compile(r"\\gt(?![A-Za-z])"), ">"),
    (re.compile(r"\\lt(?![A-Za-z])"), "<"),
]


@functools.lru_cache(maxsize=65536)
def _norm(s: str) -> str:
    s = clean(s).replace("$", "")
    for rx, new in _RELATION_TOKENS:
        s = rx.sub(new, s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s.lower() if re.fullmatch(r"[^\W\d_]{2,}", s) else s


def is_relation(s: str) -> bool:
    """Does `s` state a relation: an inequality, or an equation that is not an assignment (a left
    side of symbols only, as math-verify has it: 'x = 5', 'y = 2x + 3', 'f(x) = 2x + 1') nor a
    computation ('16 - 3 - 4 = 9')? 'a + 3z = 0' and 'x \\ge 5' are relations."""
    c = clean(s)
    if RELATION_RE.search(c):
        return True
    if "=" not in c:
        return False
    return not SYMBOLIC_LHS_RE.fullmatch(c.split("=", 1)[0]) and parse_number(c) is None


# An answer that is a set: an interval, a union, a set in braces, the empty set, the reals.
_SET_LIKE_RE = re.compile(r"\s*(?:[(\[].*[)\]]|\\\{.*\\\}|.*\\cup.*|\\emptyset|\\mathbb\s*\{?R\}?)\s*", re.S)


def _text_gold(gold: str) -> str | None:
    """Lower-cased word(s) when the gold is plain text (\\text{Evelyn}, east), else None."""
    g = clean(gold).replace("$", "").strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z ]*[A-Za-z]", g) and ("\\text" in gold or "\\mbox" in gold or len(g) >= 4):
        return " ".join(g.lower().split())
    return None


def _math_worth(answer: str) -> bool:
    """For a numeric gold: only math-looking answers go to math-verify ('\\sqrt{4}', '2^3')."""
    c = TEXT_CMD_RE.sub(" ", clean(answer))
    c = re.sub(r"\\[A-Za-z]+", " ", c)
    if re.search(r"[^\W\d_]{2,}", c):
        return False
    return bool(re.search(r"\d", c)) or "\\" in answer


_AND_OR_RE = re.compile(r"\s*(?:\\text\s*\{\s*(?:and|or)\s*\}|\\(?:quad|qquad)|\band\b|\bor\b)\s*")


def _as_list(s: str) -> str:
    """'12 \\text{ and } 13' -> '12, 13': several values written in words, as a list."""
    return _AND_OR_RE.sub(", ", s) if ("and" in s or "or" in s or "quad" in s) else s


_DECIMAL_COMMA_RE = re.compile(r"\s*-?\d+,(?!\d{3}(?!\d))\d+\s*|\s*-?0,\d+\s*")


def _decimal_comma(s: str) -> str:
    """'2,74' and '0,111' -> '2.74', '0.111' (a comma that cannot separate thousands); '1,000' stays."""
    return s.replace(",", ".") if _DECIMAL_COMMA_RE.fullmatch(s) else s


_EQUALS_RE = re.compile(r"(?<![<>!\\])=|\\approx(?![A-Za-z])|≈")
_LETTERS_RE = re.compile(r"\\[A-Za-z]+|[A-Za-z]")


def _computed(s: str) -> str:
    """The result of a computation written as a chain ('\\sqrt{50} = 5\\sqrt{2}' -> '5\\sqrt{2}',
    '2 \\cdot 9 = 18'): no side has a letter outside LaTeX commands. Anything else comes back
    unchanged ('x = 5', 'a + 3z = 0', '0 = x^2 - 4' keep all their sides)."""
    if "=" not in s and "approx" not in s and "≈" not in s:
        return s
    parts = _EQUALS_RE.split(s)
    if len(parts) < 2 or not parts[-1].strip() or RELATION_RE.search(s):
        return s
    for p in parts:
        bare = re.sub(r"\\[A-Za-z]+|\\text\s*\{[^{}]*\}", " ", p)
        if not p.strip() or _LETTERS_RE.search(bare) or "," in p:
            return s  # a side with a variable: an equation ('0 = x^2 - 4'), not a computation
    return parts[-1].strip()


def answers_match(answer: str | None, gold: str) -> bool:
    """Does an extracted answer equal a (normalized) gold answer?"""
    if answer is None or not gold:
        return False
    answer, gold = str(answer).strip(), str(gold).strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return False
    answer, gold = _computed(answer), _computed(gold)
    letter = gold_choice(gold)
    if letter is not None:
        return choice_letter(answer) == letter
    if _norm(answer) == _norm(gold):
        return True
    if is_relation(gold):
        # Another relation, an assignment ('y = -3/2 x + 3' is the line '3x + 2y = 6'), or the
        # set a relation describes ('(2, 5)' for '2 < x < 5'); never a value.
        c = clean(answer)
        comparable = RELATION_RE.search(c) or "=" in c or _SET_LIKE_RE.fullmatch(c)
        return bool(comparable) and sandbox.equal(gold, answer)
    if is_relation(answer):
        return False  # a relation never equals a value by one of its sides
    g = parse_number(_decimal_comma(gold))
    if g is not None:
        p = parse_number(_decimal_comma(answer))
        if p is not None:
            return numbers_match(g, p)
        return _math_worth(answer) and sandbox.equal(gold, _as_list(answer))
    text = _text_gold(gold)
    if text is not None:
        c = " ".join(clean(answer).replace("$", "").lower().split())
        return c == text or re.sub(r"^(?:the|a|an)\s+", "", c) == text
    return sandbox.equal(_as_list(gold), _as_list(answer))
