"""Multiple-choice letters: the letter a gold answer is, the letter an answer names, and a letter
stated in words when the options are known ('I think it's B', 'Hence (A) is correct')."""

from __future__ import annotations

import re

from compass.answers.extract import readable_text
from compass.answers.text import clean

_GOLD_RE = re.compile(r"\(?([A-J])\)?")
_CHOICE_RE = re.compile(r"^(?:(?i:option|choice|answer)\s*(?i:is)?\s*[:：]?\s*)?(?:\(([A-Ja-j])\)|([A-J])(?=$|\s*[.):,]|\s*$))")
_STATED_RES = [
    # "answer is (C)", "Answer: C", "ANS:D", "Ans A", "Answer - E", "option C", "答えは C"
    re.compile(r"\b(?i:answer|ans|option|choice)\b\s*(?i:is\b)?\s*[:：=-]?\s*\**\s*\(?([A-J])\)?(?![A-Za-z0-9])"),
    re.compile(r"(?:答え|正解|解答)\s*(?:は|:)\s*\(?([A-J])\)?"),
    # "(C) is the correct answer", "D is the answer", "Hence (A) is correct"
    re.compile(r"(?<![A-Za-z])\(?([A-J])\)?\s+is\s+(?:the\s+)?(?:(?i:correct|right)\s+)?(?i:answer|option|choice|correct|right)\b"),
    # "I think it's B.", "it must be (D)", "I'd choose C", "I pick E": the letter ends the clause
    re.compile(r"(?i:\bit'?s|\bit\s+is|\bmust\s+be|\bchoose|\bchoosing|\bpick|\bselect|\bgo\s+with)\s+\(?([A-J])\)?(?=\s*(?:[.,;:!?]|$))", re.M),
    # a last line that is only a letter: "D", "E)", "(B)."
    re.compile(r"(?:^|\n)\s*\(?([A-J])\)?[.)]?\s*$"),
]


def gold_choice(gold: str) -> str | None:
    """The letter of a multiple-choice gold answer ('C', '(C)', '\\text{(C)}'), else None."""
    m = _GOLD_RE.fullmatch(clean(gold).replace("$", "").strip())
    return None if m is None else m.group(1)


def choice_letter(answer: str) -> str | None:
    """The choice letter an extracted answer names ('C', '(c)', 'C. 24', '\\text{(C)}'), or None."""
    m = _CHOICE_RE.match(clean(answer).replace("$", "").strip())
    return None if m is None else (m.group(1) or m.group(2)).upper()


def stated_choice(prediction: str) -> str | None:
    """A choice letter stated in words anywhere in the output (the latest), or None."""
    text = readable_text(prediction)
    best: tuple[int, str] | None = None
    for rx in _STATED_RES:
        for m in rx.finditer(text):
            if best is None or m.start() >= best[0]:
                best = (m.start(), m.group(1))
    return None if best is None else best[1]
