"""The answer layer by category: for each kind of answer, what must match and what must not.

Cases are written here from the categories of docs/evaluation.md ("Grading policy"), not copied
from any other project's suite; tests/test_grade.py holds the realistic model outputs, the real
data checks and the CLI."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from compass.answers import answers_match, extract_answer, grade_one, is_correct, parse_number
from compass.answers.numeric import numbers_match


def box(s: str) -> str:
    return f"Some reasoning first.\n\\boxed{{{s}}}"


def check(cases, want: bool):
    wrong = []
    for prediction, gold in cases:
        g = grade_one(prediction, gold)
        if g.correct != want:
            wrong.append((prediction, gold, g))
    assert not wrong, wrong


# ----------------------------------------------------------------------------------------------
# Relations: compared as relations, never by one side
# ----------------------------------------------------------------------------------------------

RELATIONS_EQUAL = [
    (box(r"w \geq -1"), r"w \ge -1"),
    (box(r"-1 \le w"), r"w \geq -1"),  # flipped
    (box("w >= -1"), r"w \ge -1"),
    (box(r"k \neq 4"), r"k \ne 4"),
    (box("8a - 4b = 20"), "2a - b = 5"),  # scaled equation
    (box(r"b = 2a - 5"), "2a - b = 5"),  # the same line, solved for b
    (box("p = 7"), "7"),  # an assignment states its value
    (box("7"), "p = 7"),
    (box(r"3m + 1"), "n = 3m + 1"),
    (box(r"f(w) = w^2 - 1"), "w^2 - 1"),
    ("Solving the inequality gives $w \\lt 4$.", "w < 4"),
    (box("(2, 9)"), "2 < w < 9"),  # the set the relation describes
    ("After simplifying we get $16 - 3 - 4 = 9$ eggs.", "9"),  # a computation ends in its value
    (r"Therefore $\sqrt{72} = 6\sqrt{2}$.", r"6\sqrt{2}"),
]

RELATIONS_UNEQUAL = [
    (box(r"w \le -1"), r"w \ge -1"),
    (box("w > -1"), r"w \ge -1"),
    (box("-1"), r"w \ge -1"),
    (box(r"w \ge -1"), "-1"),
    (box(r"k \ne 4"), "4"),
    (box("4"), r"k \neq 4"),
    (box("0"), "2a - 3c = 0"),  # one side of an equation is not the answer
    (box("2a - 3c = 0"), "0"),
    (box("5"), "2a - b = 5"),
    (box("3a + 2b + c + 7 = 0"), "a - b + 2c + 1 = 0"),
    (box("8a - 4b = 21"), "2a - b = 5"),
    (box("q = 7"), "p = 7"),  # another unknown
    (box("2p = 14"), "7"),
    ("Solving the inequality gives $w \\lt 4$.", "4"),
]


def test_relations_equal():
    check(RELATIONS_EQUAL, True)


def test_relations_unequal():
    check(RELATIONS_UNEQUAL, False)


# ----------------------------------------------------------------------------------------------
# Sets, tuples, intervals, matrices: as wholes; order where order matters
# ----------------------------------------------------------------------------------------------

STRUCTURES_EQUAL = [
    (box("(4, -3)"), r"\left(4,-3\right)"),
    (box(r"\{5, -1\}"), r"\{-1, 5\}"),  # a set: order free
    (box("5, -1"), "-1, 5"),  # a list of solutions is a set
    (box("[0, 4)"), "[0,4)"),
    (box(r"(-\infty, 0) \cup (3, \infty)"), r"(3, \infty) \cup (-\infty, 0)"),
    (box(r"\begin{pmatrix} 2 & -1 \\ 0 & 3 \end{pmatrix}"), r"\begin{bmatrix}2&-1\\0&3\end{bmatrix}"),
    (box(r"\begin{pmatrix} 1/2 \\ 3 \end{pmatrix}"), r"\begin{pmatrix} \frac{1}{2} \\ 3 \end{pmatrix}"),
    (box(r"x \in [1, 6]"), "[1, 6]"),
    ("The solutions are $u = 5$ and $u = -8$.", "-8, 5"),
]

STRUCTURES_UNEQUAL = [
    (box("(-3, 4)"), "(4, -3)"),  # a tuple: order matters
    (box("[0, 4]"), "[0, 4)"),  # closed is not half-open
    (box(r"(0, \infty)"), r"[0, \infty)"),
    (box("5"), "-1, 5"),  # one of two solutions is not the answer
    (box("-1, 5, 7"), "-1, 5"),
    (box(r"\begin{pmatrix} 3 \\ 1 \end{pmatrix}"), r"\begin{pmatrix} 1 \\ 3 \end{pmatrix}"),
    (box(r"(-\infty, 0) \cup (3, \infty)"), r"(-\infty, 0] \cup (3, \infty)"),
]


def test_structures_equal():
    check(STRUCTURES_EQUAL, True)


def test_structures_unequal():
    check(STRUCTURES_UNEQUAL, False)


# ----------------------------------------------------------------------------------------------
# Several boxes are one answer
# ----------------------------------------------------------------------------------------------

SEVERAL_BOXES_EQUAL = [
    ("The roots are $\\boxed{4}$ and $\\boxed{-7}$.", "-7, 4"),
    ("So $\\boxed{4}, \\boxed{-7}$.", r"\{4, -7\}"),
    ("Hence $t = \\boxed{4}$ or $t = \\boxed{-7}$.", "4, -7"),
    ("The sides are $\\boxed{9}$ \\quad $\\boxed{12}$.", "9, 12"),
]

SEVERAL_BOXES_UNEQUAL = [
    ("The roots are $\\boxed{4}$ and $\\boxed{-7}$.", "4"),
    ("The roots are $\\boxed{4}$ and $\\boxed{-7}$.", "-7"),
    ("Either \\boxed{9} or \\boxed{10}.", "9"),  # a hedge is not an answer
    # Boxes a sentence apart are not one answer: the last one counts.
    ("I first guessed \\boxed{9}. That is wrong; recounting gives \\boxed{10}.", "9, 10"),
]


def test_several_boxes_are_one_answer():
    check(SEVERAL_BOXES_EQUAL, True)
    check(SEVERAL_BOXES_UNEQUAL, False)


# ----------------------------------------------------------------------------------------------
# Numbers as written: units, separators, percent, degrees, words, Japanese, full width
# ----------------------------------------------------------------------------------------------

WRITTEN_EQUAL = [
    (box(r"42\text{ km}"), "42"),
    (box(r"42\textnormal{ km}"), "42"),
    (box(r"42 \mbox{ m}^2"), "42"),
    (box(r"42\,\mathrm{cm}^3"), "42"),
    (box(r"\text{42 kilometres}"), "42"),
    (box("42 kilometres"), "42"),
    (box(r"\$42.00"), "42"),
    (box("-\\$42"), "-42"),
    (box("3{,}250"), "3250"),
    (box(r"3,\!250"), "3250"),
    (box(r"3\,250"), "3250"),
    (box("3 250"), "3250"),  # space-grouped thousands
    (box("3\u2009250"), "3250"),  # thin space
    (box("3\u202f250\u202f000"), "3250000"),
    (box("3,250,000"), r"3{,}250{,}000"),
    (box(r"35\%"), "35"),
    (box(r"35\%"), "0.35"),  # a percent on one side
    (box("35 percent"), r"35\%"),
    (box(r"72^\circ"), "72"),
    (box(r"72^{\circ}"), r"72^\circ"),
    (box("72°"), "72"),
    (box("forty-two"), "42"),
    (box("2,5"), "2.5"),  # a decimal comma (the comma cannot separate thousands)
    ("答えは４２個です。", "42"),  # full-width digits
    ("答えは四十二です。", "42"),
    ("答え：3万2千円", "32000"),
    (box("４２"), "42"),
]

WRITTEN_UNEQUAL = [
    (box(r"42\text{ km}"), "420"),
    (box("3,250"), "3.25"),
    (box("3 250"), "3"),
    (box("0.35"), "35"),  # no percent sign anywhere
    (box("35"), "0.35"),
    (box("42 m"), "42000"),  # no unit conversion
    ("答えは四十一です。", "42"),
    (box("41 or 42"), "42"),
    (box("-42"), "42"),
]


def test_numbers_as_written_equal():
    check(WRITTEN_EQUAL, True)


def test_numbers_as_written_unequal():
    check(WRITTEN_UNEQUAL, False)


# ----------------------------------------------------------------------------------------------
# The precision policy
# ----------------------------------------------------------------------------------------------

PRECISION_EQUAL = [
    (box("2.333"), r"\frac{7}{3}"),  # 3 places of a non-terminating fraction
    (box("0.1429"), r"\frac{1}{7}"),
    (box("1.667"), r"1\frac{2}{3}"),
    (box("0.142857"), "1/7"),
    (box("2.25"), r"\frac{9}{4}"),  # exact
    (box("0.0625"), r"\frac{1}{16}"),
    (box(r"\frac{7}{3}"), "2.333"),  # a rounded gold, the exact fraction answered
    (box(r"1.414214"), r"\sqrt{2}"),  # irrational: math-verify's 6 places
]

PRECISION_UNEQUAL = [
    (box("0.053"), "0.05281"),  # a rounded value is not a terminating one
    (box("0.0528"), "0.05281"),
    (box("2.33"), r"\frac{7}{3}"),  # 2 places are not enough
    (box("2.334"), r"\frac{7}{3}"),  # not the rounding of 7/3
    (box("0.002"), r"\frac{1}{600}"),  # 1 significant digit
    (box("2.2"), r"\frac{9}{4}"),
    (box("1.41"), r"\sqrt{2}"),
    (box("3.14"), r"\pi"),
    (box("49.998"), "50"),
]


def test_precision_policy():
    check(PRECISION_EQUAL, True)
    check(PRECISION_UNEQUAL, False)


def test_numbers_match_reads_percent_places_on_the_value():
    third = parse_number(r"\frac{1}{3}")
    assert numbers_match(third, parse_number("33.3%")) and not numbers_match(third, parse_number("33%"))


# ----------------------------------------------------------------------------------------------
# Choice letters
# ----------------------------------------------------------------------------------------------

CHOICES_EQUAL = [
    ("Comparing the options, I think it's D.", "D"),
    ("The correct option is **D**.", "D"),
    ("So it must be (D).", "D"),
    ("Answer: (D) 17", "D"),
    (box(r"\text{(D)}"), "D"),
    (box("D"), r"\text{(D)}"),
    (box("(d)"), "D"),
    ("Neither A nor B works, so the answer is D.", "D"),
]

CHOICES_UNEQUAL = [
    ("Comparing the options, I think it's D.", "B"),
    ("Neither A nor B works, so the answer is D.", "A"),
    (box("17"), "D"),  # a value is not a letter: the options are not known here
    ("Answer: (B) 17", "D"),
]


def test_choice_letters():
    check(CHOICES_EQUAL, True)
    check(CHOICES_UNEQUAL, False)


# ----------------------------------------------------------------------------------------------
# Extraction: what the output says, not what happens to come last
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, answer",
    [
        # an explicit final answer after a box, or a later box, wins over an earlier box
        ("Trying values gives \\boxed{12}. Checking again, 12 fails.\nFinal answer: 15", "15"),
        ("Trying values gives \\boxed{12}. Checking again...\n\n**Final Answer:** $15$", "15"),
        ("Trying values gives \\boxed{12}.\n#### 15", "15"),
        ("First \\boxed{12}; after correcting the sign, the result is \\boxed{15}.", "15"),
        # ... but a later approximation or a mere mention does not
        ("So the exact value is \\boxed{\\frac{47}{3}}, which is about 15.67.", r"\frac{47}{3}"),
        ("Hence \\boxed{15}. Note that 12 was ruled out.", "15"),
        # the last math span, when no value follows it
        ("Dividing both sides, we obtain $\\frac{4}{9}$.", r"\frac{4}{9}"),
        ("Putting it together: $(7, -2)$.", "(7, -2)"),
        ("Collecting terms, $t \\geq 8$.", r"t \geq 8"),
        # never a variable name, a digit in a word, an exponent, or a piece of a fraction or tuple
        ("The smallest such $k$ is 41.", "41"),
        ("The serial number is QX7B and the count is 19.", "19"),
        ("The count is 19 for model QX7B", "19"),
        ("The area of the floor is 36 m².", "36"),
        ("So the probability is 5/8.", "5/8"),
        ("So the point is (3, 11).", "(3, 11)"),
        ("The interval is [2, 9).", "[2, 9)"),
        ("The result is 1 500 000 people.", "1 500 000"),
        # several math spans side by side are one answer; so are assignments after a final answer
        ("The solutions are $u = 5$ and $u = -8$.", "u = 5, u = -8"),
        ("Final answer: u = 5, v = -8", "u = 5, v = -8"),
        # a reasoning model's reply after its thinking, and the lower-case answer tags
        ("<think>\nPerhaps \\boxed{30}? No: 6 * 6 = 36.\n</think>\nThe answer is 36.", "36"),
        ("<think>6 * 6 = 36</think><answer>36</answer>", "36"),
    ],
)
def test_extraction(prediction, answer):
    assert extract_answer(prediction) == answer


@pytest.mark.parametrize(
    "prediction, gold",
    [
        ("So the probability is 5/8.", "8"),
        ("So the point is (3, 11).", "11"),
        ("The area of the floor is 36 m².", "2"),
        ("The serial number is QX7B", "7"),
        ("It comes to 3^{4} in total", "4"),
        ("The smallest such $k$ is 41.", "k"),
        ("Trying values gives \\boxed{12}. Checking again, 12 fails.\nFinal answer: 15", "12"),
        ("The solutions are $u = 5$ and $u = -8$.", "-8"),
        ("<think>\nPerhaps \\boxed{30}? No: 6 * 6 = 36.\n</think>\nThe answer is 36.", "30"),
    ],
)
def test_extraction_never_takes_a_piece(prediction, gold):
    assert not is_correct(prediction, gold)


def test_answers_match_on_extracted_text():
    assert answers_match("x = 4", "4") and not answers_match(r"x \le 4", "4")
    assert not answers_match(None, "4") and not answers_match("4", "") and not answers_match("4" * 2000, "4" * 2000)


# ----------------------------------------------------------------------------------------------
# Runaway outputs: linear-ish, time-bounded
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{" * 20000 + "7",
        "\\boxed{7} " + "\\boxed{" * 20000,
        "\\boxed{" + "{" * 20000 + "7" + "}" * 20001,
        "<Answer>" * 10000 + "\\boxed{" * 10000,
        "The answer is " * 20000,
        "$" * 100000,
        "(7, " * 30000,
        "\\boxed 7 " * 20000,
        "x = " * 20000 + "7",
    ],
)
def test_runaway_outputs_are_graded_quickly(text):
    t0 = time.perf_counter()
    grade_one(text, "7")
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------------------------
# Layering: the answer layer sits below every stage
# ----------------------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "compass"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_stage_grades_through_eval_and_answers_import_downward_only():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        imports = _imports(path)
        if not rel.startswith("eval/"):
            assert "compass.eval.grade" not in imports, rel
        if rel.startswith("answers/"):
            assert all(m == "compass" or m.startswith(("compass.answers", "compass.trace_format")) for m in imports if m.startswith("compass")), rel
