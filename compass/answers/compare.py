"""Is an extracted answer the gold answer? Domain rules first, math-verify for the rest.

`answers_match(answer, gold)` reads what kind of answer the gold is and compares accordingly:

* a choice letter ('C', '(C)', '\\text{(C)}'): the letter the answer names;
* the same text after light normalisation (spacing, ``\\left``/``\\right``, ``\\dfrac``, text
  wrappers, ``\\geq``/``\\ge``/``>=``): equal;
* a relation ('x \\ge 5', 'a + 3z = 0', 'x \\ne 3'): only a relation can equal it, and math-verify
  compares the two as relations (same kind, or flipped; equations also up to scaling, by solving);
  an assignment ('x = 5', 'y = 2x + 3') also equals its value;
* a number: an answer that reads as one number is compared exactly (`compass.answers.numbers`:
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
from compass.answers.extract import choice_letter
from compass.answers.numbers import RELATION_RE, numbers_match, parse_number
from compass.answers.text import TEXT_CMD_RE, clean

_CHOICE_GOLD_RE = re.compile(r"\(?([A-J])\)?")
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


def gold_choice(gold: str) -> str | None:
    """The letter of a multiple-choice gold answer ('C', '(C)', '\\text{(C)}'), else None."""
    m = _CHOICE_GOLD_RE.fullmatch(clean(gold).replace("$", "").strip())
    return None if m is None else m.group(1)


_ASSIGNED_RE = re.compile(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*=(?!=)")


def is_relation(s: str) -> bool:
    """Does `s` state a relation (an inequality, or an equation that is not an assignment of a
    value to a name: 'a + 3z = 0', not 'x = 5' nor 'y = 2x + 3')?"""
    c = clean(s)
    if RELATION_RE.search(c):
        return True
    if "=" not in c:
        return False
    return not _ASSIGNED_RE.match(c) and parse_number(c) is None


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


def answers_match(answer: str | None, gold: str) -> bool:
    """Does an extracted answer equal a (normalized) gold answer?"""
    if answer is None or not gold:
        return False
    answer, gold = str(answer).strip(), str(gold).strip()
    if not answer:
        return False
    letter = gold_choice(gold)
    if letter is not None:
        return choice_letter(answer) == letter
    if _norm(answer) == _norm(gold):
        return True
    gold_is_relation, answer_is_relation = is_relation(gold), is_relation(answer)
    if gold_is_relation:
        return answer_is_relation and sandbox.equal(gold, answer)
    if answer_is_relation:
        return False  # a relation never equals a value by one of its sides
    g = parse_number(gold)
    if g is not None:
        p = parse_number(answer)
        if p is not None:
            return numbers_match(g, p)
        return _math_worth(answer) and sandbox.equal(gold, _as_list(answer))
    text = _text_gold(gold)
    if text is not None:
        c = " ".join(clean(answer).replace("$", "").lower().split())
        return c == text or re.sub(r"^(?:the|a|an)\s+", "", c) == text
    return sandbox.equal(_as_list(gold), _as_list(answer))
