"""The answer grader: realistic model outputs (English and Japanese), near misses, real data
(GSM8K, MATH-500, MGSM, AQuA from ../shared/data), math-verify's timeouts, and the CLI."""

from __future__ import annotations

import csv
import json
import multiprocessing
import signal
import threading
import time

import pytest

from compass import cli
from compass.answers import extract_answer, grade_one, is_correct, normalize_gold, parse_number, sandbox
from compass.eval import grade
from compass.eval.grade import grade_rows
from conftest import shared_file


def xml(thinking: str, boxed: str, problem: str = "Janet's ducks lay 16 eggs per day...") -> str:
    return f"<Problem>{problem}</Problem>\n<Thinking>{thinking}</Thinking>\n<Answer>\n\\boxed{{{boxed}}}\n</Answer>"


JANET_COT = (
    "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and uses 4 for muffins, "
    "so she has 16 - 3 - 4 = 9 eggs left.\nShe sells each egg for $2, so she makes 9 * 2 = 18 dollars."
)

# ----------------------------------------------------------------------------------------------
# Model outputs that answer correctly, in the forms real models write
# ----------------------------------------------------------------------------------------------

CORRECT = [
    # the trained XML format
    (xml("16 - 3 - 4 = 9 eggs remain. 9 × $2 = $18.", "18"), "18"),
    (xml("16 - 3 - 4 = 9 eggs remain. 9 × $2 = $18.", "18", problem="ジャネットのアヒルは1日に16個の卵を生みます。"), "18"),
    (xml("9 * 2 = 18", "\\$18"), "18"),
    (xml("9 * 2 = 18", "18 \\text{ dollars}"), "18"),
    (xml("9 * 2 = 18", "\\text{18 dollars}"), "18"),
    (xml("9 * 2 = 18", "\\$18.00"), "18"),
    (xml("9個 × 2ドル = 18ドル", "18ドル"), "18"),
    (xml("合計は18円です。", "18円"), "18"),
    (xml("残りは18個です。", "18個"), "18"),
    (xml("80,000 + 50,000 = 130,000 ... 200,000 - 130,000 = 70,000", "70,000"), "70000"),
    (xml("The profit is $70,000.", "\\$70{,}000"), "#### 70000"),
    (xml("利益は7万ドルです。", "7万"), "70000"),
    (xml("The answer is 1/2.", "\\frac{1}{2}"), "0.5"),
    (xml("Half of it.", "\\dfrac{1}{2}"), "1/2"),
    (xml("0.5 of the pizza", "0.5"), "\\frac{1}{2}"),
    (xml("The discount is 25 percent.", "25\\%"), "25"),
    (xml("20 out of 80 is 25%.", "25%"), "25"),
    (xml("So the answer is 25.", "25"), "25\\%"),
    (xml("Lost 10 dollars", "-10"), "-10"),
    (xml("Subtracting, we get −3.", "−3"), "-3"),
    (xml("Twelve hours in total.", "twelve"), "12"),
    (xml("Hmm, first I got 16 eggs.", "16") + "\nWait, she eats 3 and bakes 4: 9 eggs, 9*2 = 18.", "16"),
    # several boxes: the last one inside <Answer> wins, a box in <Thinking> does not
    (
        "<Problem>How much does she make?</Problem>\n<Thinking>I first thought \\boxed{16} but she eats 3 and bakes 4, "
        "so 9 eggs at $2 is $18.</Thinking>\n<Answer>\n\\boxed{16} is wrong; the answer is \\boxed{18}\n</Answer>",
        "18",
    ),
    # an <Answer> without a box still wins over a box in the thinking
    ("<Problem>p</Problem>\n<Thinking>Maybe \\boxed{16}? No: 9 * 2 = 18.</Thinking>\n<Answer>\n18\n</Answer>", "18"),
    ("<Problem>p</Problem>\n<Thinking>9 * 2 = 18</Thinking>\n<Answer>\nJanet makes $18 every day.\n</Answer>", "18"),
    ("<Problem>p</Problem>\n<Thinking>9 × 2 = 18</Thinking>\n<Answer>\n答えは18ドルです。\n</Answer>", "18"),
    # malformed XML (missing </Thinking>) still graded on its <Answer>
    ("<Problem>p</Problem>\n<Thinking>9 * 2 = 18\n<Answer>\n\\boxed{18}\n</Answer>", "18"),
    # no XML: a box anywhere (Qwen / DeepSeek style)
    (JANET_COT + "\n\nTherefore, Janet makes \\(\\boxed{18}\\) dollars every day.", "18"),
    (JANET_COT + "\n\nThe final answer is: $\\boxed{18}$", "18"),
    (JANET_COT + "\n\n**Final Answer**\n\\[\n\\boxed{18}\n\\]", "18"),
    ("She makes $\\boxed{\\$18}$ a day.", "$18"),
    # GSM8K style
    (JANET_COT + "\n#### 18", "18"),
    ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),
    ("The house cost 80,000+50,000=$130,000 ... so he made 200,000-130,000=$70,000\n#### 70,000", "70000"),
    # answer phrases
    (JANET_COT + "\nThe answer is 18.", "18"),
    (JANET_COT + "\nSo the answer is $18.", "18"),
    (JANET_COT + "\nThe answer is $18$ dollars.", "18"),
    (JANET_COT + "\nTherefore, the final answer is 18 dollars per day.", "18"),
    (JANET_COT + "\nFinal Answer: The final answer is $18$. I hope it is correct.", "18"),
    (JANET_COT + "\n\n**Answer:** $18", "18"),
    (JANET_COT + "\n\n### Final Answer:\n18", "18"),
    ("Q: Janet's ducks ...\nA: " + JANET_COT + " The answer is 18.", "18"),
    ("A: 18", "18"),
    (JANET_COT + "\nThe answer is eighteen.", "18"),
    ("The answer to the question is 1,000.", "1000"),
    ("The total cost is $1,000.", "1000"),
    ("The answer is 1000.", "1,000"),
    ("The answer is: 25%", "25"),
    ("So she has twenty-four stickers left. The answer is twenty-four.", "24"),
    ("The answer is one hundred and five.", "105"),
    ("Each box holds 2.5 kg, so the answer is 7.5 kg.", "7.5"),
    ("The answer is 60 km/h.", "60"),
    ("The answer is 5 million.", "5000000"),
    ("x = 5", "5"),
    ("Solving, we get x = 5.", "5"),
    # Japanese answer phrases and number words
    ("ジャネットは 16 - 3 - 4 = 9 個の卵を売ります。9 × 2 = 18 なので、答えは18ドルです。", "18"),
    ("卵は9個残り、1個2ドルで売るので 9×2=18 ドル。\n答え：18", "18"),
    ("計算すると 9×2=18 となります。\n答：１８ドル", "18"),
    ("残りは3個です。答えは三です。", "3"),
    ("全部で十五個あります。答えは十五個です。", "15"),
    ("答えは二十四です。", "24"),
    ("よって、正解は百二十円です。", "120"),
    ("利益は7万ドルです。", "70000"),
    ("答えは11万4200円です。", "114,200"),
    ("最終的な答えは 2,125 です。", "2,125"),
    # MGSM few-shot style: "Step-by-Step Answer:" opens the reasoning, it does not state the answer
    ("Step-by-Step Answer: Janet's ducks lay 16 eggs. She uses 3 + 4 = 7. 16 - 7 = 9 eggs. 9 * 2 = 18.", "18"),
    ("Step-by-Step Answer: She uses 3 + 4 = 7 eggs. 16 - 7 = 9. 9 * 2 = 18. The answer is 18.", "18"),
    ("ステップごとの答え：ジャネットのアヒルは1日に16個の卵を生みます。16-3-4=9個残ります。9×2=18ドルです。", "18"),
    ("ステップごとの答え：16-3-4=9。9×2=18。答えは18です。", "18"),
    # chat-model endings
    ("**Answer:** Janet makes **$18** every day at the farmers' market.", "18"),
    ("Janet makes $18 every day.\n\n### Answer: 18", "18"),
    ("したがって、ジャネットは毎日**18ドル**を稼ぎます。", "18"),
    ("**答え：18ドル**", "18"),
    ("答え：$18$ドル", "18"),
    ("答え: 18ドル(9個×2ドル)", "18"),
    ("答えは「18」です。", "18"),
    ("The answer is 18, since 9 * 2 = 18.", "18"),
    ("The answer is not 16 but 18.", "18"),
    ("Is the answer 16? No: 16 - 3 - 4 = 9 eggs, and 9 * 2 = 18. So Janet makes $18.", "18"),
    ("A: Let's think step by step.\nJanet has 16 eggs. She eats 3 and bakes 4, so 9 are left.\nShe makes 9 * 2 = 18 dollars.", "18"),
    ("Final Answer:\n\n18", "18"),
    ("She makes eighteen dollars a day.", "18"),
    # the last number, when nothing else is said
    (JANET_COT, "18"),
    ("16 - 3 - 4 = 9\n9 * 2 = 18", "18"),
    ("Eighteen.", "18"),
    ("18", "#### 18"),
    # MATH-style LaTeX answers (math-verify and the exact paths)
    (xml("x = 14/3", "\\frac{14}{3}"), "\\frac{14}{3}"),
    (xml("", "\\dfrac{14}{3}"), "\\frac{14}{3}"),
    (xml("", "4\\frac{2}{3}"), "\\frac{14}{3}"),
    (xml("", "4.667"), "\\frac{14}{3}"),
    (xml("", "(3, \\frac{\\pi}{2})"), "\\left( 3, \\frac{\\pi}{2} \\right)"),
    (xml("", "\\left(3,\\frac{\\pi}{2}\\right)"), "\\left( 3, \\frac{\\pi}{2} \\right)"),
    (xml("", "\\sqrt{200}"), "10\\sqrt{2}"),
    (xml("", "10\\sqrt2"), "10\\sqrt{2}"),
    (xml("", "(-\\infty, 0]"), "(-\\infty, 0]"),
    (xml("", "[-2, 7]"), "x \\in [-2,7]"),
    (xml("", "(-\\infty,2)\\cup(3,\\infty)"), "(-\\infty, 2) \\cup (3, \\infty)"),
    (xml("", "1\\pm\\sqrt{19}"), "1 \\pm \\sqrt{19}"),
    (xml("", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"), "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
    (xml("", "7, 5, 3"), "3, 5, 7"),
    (xml("", "137.5"), "137 \\frac{1}{2}"),
    (xml("", "1.8"), "1\\frac{4}{5}"),
    (xml("", "10080"), "10,\\!080"),
    (xml("", "11111111100"), "11,\\! 111,\\! 111,\\! 100"),
    (xml("", "\\$18.90"), "\\$18.90"),
    (xml("", "18.9"), "\\$18.90"),
    (xml("", "5.4"), "5.4 \\text{ cents}"),
    (xml("", "15"), "15\\mbox{ cm}^2"),
    (xml("", "15 \\text{ cm}^2"), "15\\mbox{ cm}^2"),
    (xml("", "106°"), "106^\\circ"),
    (xml("", "106"), "106^\\circ"),
    (xml("", "0.0000672"), ".0000672"),
    (xml("", "-\\frac{3}{8}"), "-\\frac{3}{8}"),
    (xml("", "\\frac{-3}{8}"), "-\\frac{3}{8}"),
    (xml("", "-0.375"), "-\\frac{3}{8}"),
    (xml("", "\\frac{\\sqrt{3}}{3}"), "\\frac{\\sqrt{3}}{3}"),
    (xml("", "\\frac{1}{\\sqrt{3}}"), "\\frac{\\sqrt{3}}{3}"),
    (xml("", "-2+7i"), "-2 + 7i"),
    (xml("", "x^3 + 3x - 6"), "x^3+3x-6"),
    (xml("", "y=2x+3"), "y = 2x + 3"),
    (xml("", "5"), "x=5"),
    (xml("", "\\text{Evelyn}"), "\\text{Evelyn}"),
    (xml("", "Evelyn"), "\\text{Evelyn}"),
    (xml("", "\\text{East}"), "\\text{east}"),
    (xml("", "2516_8"), "2516_8"),
    (xml("", "4210_{5}"), "4210_{5}"),
    ("The final answer is $\\frac{14}{3}$.", "\\frac{14}{3}"),
    ("Therefore, the answer is $\\left( 3, \\frac{\\pi}{2} \\right)$.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("$p - q$", "p - q"),
    # multiple choice (AQuA letters, MATH \text{(C)})
    (xml("", "C"), "C"),
    (xml("", "(C)"), "C"),
    (xml("", "C)"), "C"),
    (xml("", "\\text{(C)}"), "C"),
    (xml("", "C. 24"), "C"),
    (xml("", "(C) 24"), "C"),
    (xml("", "\\text{(C) } 24"), "C"),
    (xml("", "C"), "\\text{(C)}"),
    ("The answer is (C).", "C"),
    ("After simplifying, the correct option is C.", "C"),
    ("Answer: C", "C"),
    ("So x = 24, which matches option (C).\nThe answer is C) 24.", "C"),
    ("24 apples. Hence (B) is the correct answer.", "B"),
    ("答えは (D) です。", "D"),
]


@pytest.mark.parametrize("prediction, gold", CORRECT)
def test_correct_forms(prediction, gold):
    g = grade_one(prediction, gold)
    assert g.correct, (g, gold)
    assert is_correct(prediction, gold)


# ----------------------------------------------------------------------------------------------
# Near misses: precision matters as much as recall
# ----------------------------------------------------------------------------------------------

WRONG = [
    ("The answer is 42.", "4"),
    ("The answer is 42.", "420"),
    ("The answer is 42.", "2"),
    (xml("", "18"), "180"),
    (xml("", "180"), "18"),
    (xml("", "18.5"), "18"),
    (xml("", "1.8"), "18"),
    (xml("", "1/8"), "18"),
    (xml("", "1,800"), "18"),
    (xml("", "$1,000,000"), "1000"),
    (xml("", "100"), "1,000"),
    (xml("", "-18"), "18"),
    (xml("", "18"), "-18"),
    (xml("", "0.25"), "25"),  # no percent sign anywhere: 0.25 is not 25
    (xml("", "25"), "0.25"),
    (xml("", "32.998"), "33"),
    (xml("", "4.67"), "\\frac{14}{3}"),
    (xml("", "\\frac{1}{3}"), "\\frac{1}{2}"),
    (xml("", "2"), "2k"),
    (xml("", "2k"), "2"),
    (xml("", "5x"), "5"),
    (xml("", "5 m"), "5000"),
    (xml("", "18 or 19"), "18"),
    (xml("", "18 \\text{ or } 19"), "18"),
    ("The answer is 18 or 19.", "18"),
    ("The answer is between 18 and 20.", "18"),
    (xml("", "18 dollars and 50 cents"), "18"),
    (xml("", "(3, \\frac{\\pi}{3})"), "\\left( 3, \\frac{\\pi}{2} \\right)"),
    (xml("", "(-\\infty, 0)"), "(-\\infty, 0]"),
    (xml("", "\\sqrt{2}"), "10\\sqrt{2}"),
    (xml("", "Nevely"), "\\text{Evelyn}"),  # same letters: math-verify would call this equal
    (xml("", "seat"), "\\text{east}"),
    (xml("", "west"), "\\text{east}"),
    (xml("", "3, 5"), "3, 5, 7"),
    (xml("", "2 - 7i"), "-2 + 7i"),
    (xml("", "x^3 + 3x + 6"), "x^3+3x-6"),
    # the box inside <Answer> wins over a right number elsewhere
    ("<Problem>p</Problem>\n<Thinking>9 * 2 = 18, so \\boxed{18}</Thinking>\n<Answer>\n\\boxed{16}\n</Answer>", "18"),
    ("<Problem>p</Problem>\n<Thinking>9 * 2 = 18</Thinking>\n<Answer>\n\\boxed{18} \\boxed{16}\n</Answer>", "18"),
    # an answer phrase wins over the last number
    ("The answer is 16. Note that 9 * 2 = 18.", "18"),
    ("#### 16\nThe answer is 18.", "18"),
    # numbers of the problem restatement are never answers
    ("<Problem>She sells 18 eggs. How many are left?</Problem>\n<Thinking>She sells", "18"),
    # truncated output: the last number is an intermediate one
    (xml("", "")[:0] + "<Problem>p</Problem>\n<Thinking>Janet has 16 eggs and eats 3", "18"),
    ("", "18"),
    ("I don't know.", "18"),
    ("答えは十八ではなく十七です。", "18"),
    ("答えは17個です。", "18"),
    ("答えは三です。", "30"),
    ("Answer: 16. Wait, 9 * 2 = 18.", "18"),  # the stated answer counts, not a later afterthought
    # multiple choice
    (xml("", "D"), "C"),
    (xml("", "(B) 24"), "C"),
    ("The answer is (A).", "C"),
    (xml("", "24"), "C"),  # a value, not a letter: the options are not known here
]


@pytest.mark.parametrize("prediction, gold", WRONG)
def test_near_misses_are_wrong(prediction, gold):
    g = grade_one(prediction, gold)
    assert not g.correct, (g, gold)


# ----------------------------------------------------------------------------------------------
# Extraction: which form matched
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, text, form",
    [
        (xml("t", "18"), "18", "answer_boxed"),
        (xml("t", "\\frac{1}{2}"), "\\frac{1}{2}", "answer_boxed"),
        (xml("t", "{18}"), "{18}", "answer_boxed"),
        ("<Problem>p</Problem><Thinking>t</Thinking><Answer>\n18\n</Answer>", "18", "answer_tag:whole"),
        ("\\boxed{1} then \\boxed{2} and an empty \\boxed{}", "2", "boxed"),
        ("Answer: \\boxed{\\frac{a}{b}} and more text", "\\frac{a}{b}", "boxed"),
        ("x\n#### 72", "72", "hashes"),
        ("#### Final Answer\nThe total is 72.", "72", "last_number"),  # a markdown heading, not GSM8K's ####
        ("So the answer is 72.", "72", "answer_phrase"),
        ("The answer is $\\frac{14}{3}$ cm.", "$\\frac{14}{3}$ cm", "answer_phrase"),
        ("The answer is $\\frac{\\sqrt{3}}{2}$ or so.", "\\frac{\\sqrt{3}}{2}", "answer_phrase"),
        ("答えは72個です。", "72個です", "answer_phrase"),
        ("seventy-two", "seventy-two", "whole"),
        ("First 3, then 5, finally 72 apples", "72", "last_number"),
        ("He lost -10 dollars in total: -10", "-10", "last_number"),
        ("First 10%, then 15%,\nfinally it is 25%", "25%", "last_number"),
    ],
)
def test_extract_answer(prediction, text, form):
    got = extract_answer(prediction)
    assert got == text and got.form == form


def test_extract_answer_none():
    assert extract_answer("") is None
    assert extract_answer("no numbers at all here") is None
    assert extract_answer(None) is None


def test_normalize_gold():
    assert normalize_gold("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18") == "18"
    assert normalize_gold("#### 1,000") == "1000"
    assert normalize_gold(" 72 ") == "72"
    assert normalize_gold(72) == "72"
    assert normalize_gold(72.0) == "72"
    assert normalize_gold("3, 5, 7") == "3, 5, 7"  # a list, not a thousands separator
    assert normalize_gold("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert normalize_gold("\\left( 3, \\frac{\\pi}{2} \\right)") == "\\left( 3, \\frac{\\pi}{2} \\right)"


@pytest.mark.parametrize(
    "text, value, percent",
    [
        ("18", 18, False), ("$1,000", 1000, False), ("\\$1,000.50", 1000.5, False), ("18ドル", 18, False),
        ("18円", 18, False), ("18個", 18, False), ("１８個", 18, False), ("25%", 25, True), ("25\\%", 25, True),
        ("25 percent", 25, True), ("三", 3, False), ("十五", 15, False), ("二十四", 24, False), ("百二十", 120, False),
        ("三千五百", 3500, False), ("1万2千", 12000, False), ("2.5万円", 25000, False), ("eighteen", 18, False),
        ("twenty-four", 24, False), ("one hundred and five", 105, False), ("\\frac{1}{2}", 0.5, False),
        ("\\frac12", 0.5, False), ("\\frac 34", 0.75, False), ("1/2", 0.5, False), ("1 1/2 cups", 1.5, False),
        ("1\\frac{4}{5}", 1.8, False), ("½", 0.5, False), ("-3", -3, False), ("−3", -3, False), (".35625", 0.35625, False),
        ("x = 5", 5, False), ("16 - 3 - 4 = 9 eggs", 9, False), ("5 million", 5_000_000, False), ("10\\,000", 10000, False),
        ("5-year-old", 5, False), ("$18/day", 18, False), ("about 18 dollars", 18, False),
    ],
)
def test_parse_number(text, value, percent):
    n = parse_number(text)
    assert n is not None and float(n.value) == pytest.approx(value) and n.percent == percent


@pytest.mark.parametrize(
    "text",
    ["18 or 19", "2k", "5x", "x^2", "\\sqrt{2}", "1,2", "3, 5, 7", "(1, 2)", "18 dollars and 50 cents", "one two",
     "x = 5, y = 3", "2^{10}", "12:30", ""],
)
def test_parse_number_refuses(text):
    assert parse_number(text) is None


# ----------------------------------------------------------------------------------------------
# Real data (../shared/data; skipped when absent)
# ----------------------------------------------------------------------------------------------


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_gsm8k_reference_solutions_grade_100_percent():
    rows = _jsonl(shared_file("gsm8k", "test.jsonl"))
    assert len(rows) == 1319
    final_only = [r for r in rows if not is_correct(r["answer"], r["answer"].rsplit("####", 1)[1].strip())]
    full_gold = [r for r in rows if not is_correct(r["answer"], r["answer"])]
    assert not final_only and not full_gold


def test_gsm8k_reference_solution_against_another_answer_is_wrong():
    rows = _jsonl(shared_file("gsm8k", "test.jsonl"))
    golds = [normalize_gold(r["answer"]) for r in rows]
    wrong = [
        i for i, r in enumerate(rows)
        if golds[i] != golds[i - 1] and is_correct(r["answer"], rows[i - 1]["answer"])
    ]
    assert not wrong


def test_gsm8k_reference_solutions_rewritten_as_model_outputs():
    """The same solutions in the XML format, with the calculator annotations removed and the
    answer written the ways models write it."""
    rows = _jsonl(shared_file("gsm8k", "test.jsonl"))[:400]
    styles = [
        lambda a: f"\\boxed{{{a}}}",
        lambda a: f"\\boxed{{\\${int(a):,}}}" if a.lstrip("-").isdigit() and int(a) >= 0 else f"\\boxed{{{a}}}",
        lambda a: f"The answer is {a}.",
        lambda a: f"答えは{a}です。",
        lambda a: f"\\boxed{{{a} \\text{{ dollars}}}}",
    ]
    bad = []
    for i, r in enumerate(rows):
        reasoning, gold = r["answer"].rsplit("####", 1)
        gold = gold.strip()
        thinking = "".join(part.split(">>")[-1] for part in reasoning.split("<<"))
        ans = styles[i % len(styles)](gold.replace(",", ""))
        pred = (
            f"<Problem>{r['question']}</Problem>\n<Thinking>{thinking.strip()}</Thinking>\n<Answer>\n{ans}\n</Answer>"
        )
        if not is_correct(pred, gold):
            bad.append((pred[-80:], gold))
    assert not bad


def test_math500_solutions_agree_with_their_answers():
    rows = _jsonl(shared_file("math500", "test.jsonl"))
    assert len(rows) == 500
    failures = [(r["unique_id"], r["answer"]) for r in rows if not is_correct(r["solution"], r["answer"])]
    rate = 1 - len(failures) / len(rows)
    print(f"MATH-500 self-agreement: {rate:.3f}; failures: {failures}")
    assert rate >= 0.98, failures


def test_math500_answers_in_other_forms():
    rows = _jsonl(shared_file("math500", "test.jsonl"))
    bad = []
    for r in rows:
        a = r["answer"]
        for pred in (
            f"${a}$",
            f"The final answer is ${a}$. I hope it is correct.",
            xml("...", a.replace("\\frac", "\\dfrac")),
        ):
            if not is_correct(pred, a):
                bad.append((a, pred))
    assert not bad


def test_math500_no_false_matches_between_neighbours():
    """Each solution graded against its neighbour's answer: only truly equal answers may match."""
    rows = _jsonl(shared_file("math500", "test.jsonl"))[:250]
    hits = []
    for i, r in enumerate(rows):
        other = rows[i - 1]["answer"]
        if is_correct(r["solution"], other):
            hits.append((r["answer"], other))
    equal = {("7", "7"), ("3", "3"), ("x=5", "5")}
    assert set(hits) <= equal, hits


def test_mgsm_ja_answers_in_japanese_outputs():
    path = shared_file("mgsm", "mgsm_ja.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 250
    bad = []
    for i, (question, gold) in enumerate(rows):
        value = gold.replace(",", "")
        pred = [
            xml("計算します。", value, problem=question),
            f"<Problem>{question}</Problem>\n<Thinking>計算します。</Thinking>\n<Answer>\n答えは{gold}です。\n</Answer>",
            f"順に計算すると、答えは {value} になります。",
            f"答え：{value}個",
        ][i % 4]
        if not is_correct(pred, gold):
            bad.append((pred[-60:], gold))
        wrong = str(int(value) + 1)
        if is_correct(xml("計算します。", wrong, problem=question), gold):
            bad.append(("wrong accepted", wrong, gold))
    assert not bad


def test_aqua_rationales_name_their_letter():
    """Human-written AQuA rationales ('Answer : A', 'ANS:D', 'D is the answer'); a few state no letter."""
    rows = _jsonl(shared_file("aqua", "test.json"))
    ok = sum(is_correct(r["rationale"], r["correct"]) for r in rows)
    wrong_letter = sum(is_correct(r["rationale"], "ABCDE"[("ABCDE".index(r["correct"]) + 1) % 5]) for r in rows)
    print(f"AQuA rationales: {ok}/{len(rows)}; matched a wrong letter: {wrong_letter}")
    assert ok / len(rows) >= 0.9
    assert wrong_letter <= 2


# ----------------------------------------------------------------------------------------------
# math-verify behind a deadline, in threads and worker processes
# ----------------------------------------------------------------------------------------------

NEEDS_MATH_VERIFY = (xml("", "\\sqrt{200}"), "10\\sqrt{2}")


def test_math_verify_in_a_thread():
    """math-verify's own signal.alarm timeouts raise ValueError outside the main thread."""
    sandbox.equal.cache_clear()
    sandbox._parse.cache_clear()
    results = []
    t = threading.Thread(target=lambda: results.append(is_correct(xml("", "\\frac{20}{\\sqrt{2}}"), "10\\sqrt{2}")))
    t.start()
    t.join(30)
    assert results == [True]


def _grade_in_worker(args):
    return is_correct(*args)


def test_math_verify_in_a_worker_process():
    sandbox.equal.cache_clear()
    sandbox._parse.cache_clear()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.map(_grade_in_worker, [NEEDS_MATH_VERIFY, (xml("", "\\sqrt{2}"), "10\\sqrt{2}")]) == [True, False]


def test_deadline_interrupts_and_restores():
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.perf_counter()
    with pytest.raises(sandbox.Deadline):
        with sandbox.deadline(0.2):
            while True:
                pass
    assert time.perf_counter() - t0 < 2
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_timer_armed_by_the_caller_is_left_alone():
    fired = []

    def handler(*a):
        fired.append(1)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        sandbox.equal.cache_clear()
        assert is_correct(xml("", "\\frac{20}{\\sqrt{2}}"), "10\\sqrt{2}")
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 20  # still armed, not cancelled
        assert signal.getsignal(signal.SIGALRM) is handler
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_math_verify_timeout_is_a_non_match(monkeypatch):
    def slow(s):
        while True:
            pass

    monkeypatch.setattr(sandbox, "TIMEOUT_S", 0.3)
    monkeypatch.setattr(sandbox, "_parse", slow)
    sandbox.equal.cache_clear()
    t0 = time.perf_counter()
    assert not is_correct(xml("", "\\sqrt{7}"), "\\sqrt{7} + 0")
    assert time.perf_counter() - t0 < 3
    sandbox.equal.cache_clear()


@pytest.mark.parametrize("boxed", ["2^{2^{2^{100}}}", "10^{1000000}", "100000!", "x" * 5000])
def test_pathological_answers_do_not_reach_sympy(boxed):
    t0 = time.perf_counter()
    assert not is_correct(xml("", boxed), "\\frac{1}{2}")
    assert time.perf_counter() - t0 < 2


def test_grading_is_fast_without_math_verify():
    preds = [(xml(JANET_COT, str(i)), f"#### {i + (i % 2)}") for i in range(2000)]
    t0 = time.perf_counter()
    n = sum(is_correct(p, g) for p, g in preds)
    assert n == 1000
    assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------------------------
# Rows and the CLI
# ----------------------------------------------------------------------------------------------


def test_grade_rows_summary():
    rows = [
        {"id": 1, "prediction": xml("9 * 2 = 18", "18"), "answer": "#### 18"},
        {"id": 2, "prediction": "The answer is 42.", "answer": "4"},
        {"id": 3, "prediction": None, "answer": "5"},
        {"id": 4, "prediction": "答えは三です。", "answer": 3},
    ]
    graded, summary = grade_rows(rows)
    assert [r["correct"] for r in graded] == [True, False, False, True]
    assert [r["extracted"] for r in graded] == ["18", "42", None, "三です"]
    assert graded[0]["id"] == 1 and "correct" not in rows[0]
    assert summary["n"] == 4 and summary["correct"] == 2 and summary["accuracy"] == 0.5
    assert summary["well_formed"] == 1 and summary["well_formed_rate"] == 0.25


def test_grade_rows_custom_fields_and_empty_gold():
    graded, summary = grade_rows([{"out": "18", "gold": "18"}], prediction_field="out", answer_field="gold")
    assert graded[0]["correct"] and summary["accuracy"] == 1.0
    with pytest.raises(grade.CompassError, match="row 1"):
        grade_rows([{"prediction": "18", "answer": None}])
    assert grade_rows([])[1]["accuracy"] == 0.0


def test_cli_grade(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    out = tmp_path / "graded.jsonl"
    rows = [
        {"prediction": xml("16 - 3 - 4 = 9; 9 * 2 = 18", "18"), "answer": "Janet sells 9 eggs.\n#### 18"},
        {"prediction": "<Thinking>9 * 2 = 18</Thinking> The answer is 18.", "answer": "18"},
        {"prediction": xml("", "\\frac{14}{3}"), "answer": "\\frac{14}{3}"},
        {"prediction": "The answer is 42.", "answer": "420"},
    ]
    pred.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert cli.main(["grade", "--predictions", str(pred), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy: 0.7500 (3/4)" in printed and "well-formed: 0.5000 (2/4)" in printed
    graded = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["correct"] for g in graded] == [True, True, True, False]
    assert all(isinstance(g["correct"], bool) and "extracted" in g for g in graded)
    assert graded[0]["prediction"] == rows[0]["prediction"]


def test_cli_grade_custom_fields(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"output": "答えは18ドルです。", "gold": "18"}) + "\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    rc = cli.main(["grade", "--predictions", str(pred), "--out", str(out), "--prediction-field", "output", "--answer-field", "gold"])
    assert rc == 0 and json.loads(out.read_text())["correct"] is True
    assert "accuracy: 1.0000 (1/1)" in capsys.readouterr().out


def test_cli_grade_errors(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert cli.main(["grade", "--predictions", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prediction": "18", "answer": "18"}\n{"prediction": "18"}\n', encoding="utf-8")
    assert cli.main(["grade", "--predictions", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "answer" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert cli.main(["grade", "--predictions", str(empty), "--out", str(out)]) == 2
    assert "no rows" in capsys.readouterr().err
    assert not out.exists()
