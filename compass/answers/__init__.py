"""The answer layer: is this output's answer the gold answer? One judgement for every stage.

Distillation keeps the teacher traces it says are right, the pairs stage rejects the model's own
answers it says are wrong, RL rewards and every accuracy of the report are its verdicts. It sits
below all of them, beside `compass.trace_format` (whose parser it reads the <Answer> section and
the ``\\boxed{}`` with), and is split along its seams:

* `compass.answers.extract`: the final answer of an output, as text (and the gold answer of a
  worked solution);
* `compass.answers.numeric`: one number as written (separators, units, percent, words, Japanese
  numerals) and the precision policy;
* `compass.answers.compare`: what kind of answer the gold is, and equality for that kind;
* `compass.answers.choices`: multiple-choice letters;
* `compass.answers.sandbox`: math-verify behind a deadline, for the symbolic part;
* `compass.answers.text`: the Unicode and LaTeX clean-up they share.

    >>> is_correct("... so she makes \\\\boxed{18} dollars.", "#### 18")
    True

docs/evaluation.md ("Grading policy") has the table of answer kinds, what counts as equal, and why.
"""

from __future__ import annotations

from typing import NamedTuple

from compass.answers.choices import choice_letter, gold_choice, stated_choice
from compass.answers.compare import answers_match
from compass.answers.extract import Extracted, boxed_answer, extract_answer, normalize_gold
from compass.answers.numeric import Num, parse_number

__all__ = [
    "Extracted",
    "Grade",
    "Num",
    "answers_match",
    "boxed_answer",
    "choice_letter",
    "extract_answer",
    "grade_one",
    "is_correct",
    "normalize_gold",
    "parse_number",
]


class Grade(NamedTuple):
    correct: bool
    extracted: str | None
    form: str | None


def grade_one(prediction: str, gold) -> Grade:
    """Grade one model output against a (raw or normalized) gold answer."""
    g = normalize_gold(gold)
    got = extract_answer(prediction)
    form = None if got is None else got.form
    if gold_choice(g) is not None and (got is None or choice_letter(got) is None) and isinstance(prediction, str):
        letter = stated_choice(prediction)  # the options are known: a letter stated in words counts
        if letter is not None:
            got, form = letter, "choice_phrase"
    return Grade(answers_match(got, g), None if got is None else str(got), form)


def is_correct(prediction: str, gold) -> bool:
    """True when the model output `prediction` answers `gold` (a GSM8K solution, '#### 72', a
    bare value, a MATH LaTeX answer or solution, a multiple-choice letter)."""
    return grade_one(prediction, gold).correct
