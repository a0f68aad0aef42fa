"""Source loaders: the real files in ../shared/data where they exist, and small files written here
in the upstream (Hugging Face) schema of the sources that are only on the Hub."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compass.answers import boxed_answer, is_correct
from compass.data import sources
from compass.data.sources import (
    EVAL_SETS,
    SEED_SOURCES,
    SOURCES,
    clean_number,
    load_eval_problems,
    load_source,
    solution_answer,
)
from compass.io import CompassError
from conftest import shared_file

SCHEMA = {"id", "source", "lang", "problem", "answer", "solution"}
TEN = {
    "gsm8k", "math", "svamp", "aqua_rat", "mathinstruct", "mgsm_ja",
    "openr1_math", "orca_math", "numinamath_cot", "open_math_reasoning",
}


def check_rows(rows, source, lang="en"):
    assert rows, "no rows"
    for r in rows:
        assert set(r) == SCHEMA, r
        assert r["source"] == source and r["lang"] == lang
        assert isinstance(r["problem"], str) and r["problem"] == r["problem"].strip() and r["problem"]
        assert isinstance(r["answer"], str)
        assert r["solution"] is None or (isinstance(r["solution"], str) and r["solution"])
        assert re.fullmatch(rf"{source}-[A-Za-z0-9_.]+-\d{{6}}", r["id"]), r["id"]
    assert len({r["id"] for r in rows}) == len(rows)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


# --- the seed table -----------------------------------------------------------------------------


def test_seed_table_covers_the_ten_sources():
    assert set(SEED_SOURCES) == TEN
    assert TEN <= set(SOURCES)
    total = sum(s.limit for s in SEED_SOURCES.values())
    assert 590_000 <= total <= 600_000  # the seed's ~597k traces
    for s in SEED_SOURCES.values():
        assert s.limit <= s.rows and s.hf_id.count("/") == 1 and s.hf_configs
    assert set(EVAL_SETS) >= {"gsm8k_test", "mgsm_ja", "mgsm_en", "math500"}


# --- real files ---------------------------------------------------------------------------------


def test_gsm8k_real_files():
    rows = load_source({"name": "gsm8k", "path": str(shared_file("gsm8k", "train.jsonl"))})
    assert len(rows) == 7473
    check_rows(rows, "gsm8k")
    first = rows[0]
    assert first["id"] == "gsm8k-train-000000"
    assert first["problem"].startswith("Natalia sold clips to 48 of her friends")
    assert first["answer"] == "72"
    assert first["solution"] == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."
    assert not any("<<" in r["solution"] or "####" in r["solution"] for r in rows)
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", r["answer"]) for r in rows)  # "#### 1,000" -> "1000"
    test = load_source({"name": "gsm8k", "path": str(shared_file("gsm8k", "test.jsonl"))})
    assert len(test) == 1319 and test[0]["id"] == "gsm8k-test-000000" and test[0]["answer"] == "18"


def test_math500_real_file_answers_match_the_last_boxed():
    path = str(shared_file("math500", "test.jsonl"))
    rows = load_source({"name": "math500", "path": path})
    assert len(rows) == 500
    check_rows(rows, "math500")
    assert rows[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    # The MATH loader uses the answer column when there is one, else the last \boxed{} of the
    # solution: on MATH-500 both agree for every item (one solution boxes its answer twice,
    # "\boxed{15\frac{39}{40}}, or \boxed{\frac{639}{40}}": both are read, and equal the column).
    differ = [r for r in rows if boxed_answer(r["solution"]) != r["answer"]]
    assert len(differ) <= 1 and all(is_correct(r["solution"], r["answer"]) for r in differ)


def test_svamp_real_file():
    rows = load_source({"name": "svamp", "path": str(shared_file("svamp", "SVAMP.json"))})
    assert len(rows) == 1000
    check_rows(rows, "svamp")
    r = rows[0]
    assert r["problem"] == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack, "
        "how much do you have to pay to buy each pack?"
    )
    assert r["answer"] == "51" and r["solution"] == "( 76 - 25 ) = 51"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", r["answer"]) for r in rows)


def test_aqua_real_files():
    for split in ("dev", "test"):
        rows = load_source({"name": "aqua_rat", "path": str(shared_file("aqua", f"{split}.json"))})
        assert len(rows) == 254
        check_rows(rows, "aqua_rat")
        assert all(r["answer"] in "ABCDE" and len(r["answer"]) == 1 for r in rows)
        assert all("\nAnswer Choices: (A) " in r["problem"] for r in rows)
        assert rows[0]["id"] == f"aqua_rat-{split}-000000"
    dev = load_source({"name": "aqua_rat", "path": str(shared_file("aqua", "dev.json"))})
    assert dev[0]["problem"].endswith("(A) 32400 (B) 6000 (C) 600 (D) 60000 (E) 10")
    assert dev[0]["answer"] == "A" and dev[0]["solution"].startswith("To calculate the equivalent")


def test_mgsm_real_files():
    ja = load_source({"name": "mgsm_ja", "path": str(shared_file("mgsm", "mgsm_ja.tsv"))})
    en = load_source({"name": "mgsm_en", "path": str(shared_file("mgsm", "mgsm_en.tsv"))})
    assert len(ja) == len(en) == 250
    check_rows(ja, "mgsm_ja", lang="ja")
    check_rows(en, "mgsm_en")
    assert ja[0]["id"] == "mgsm_ja-test-000000" and ja[0]["answer"] == "18" and ja[0]["solution"] is None
    assert ja[0]["problem"].startswith("ジャネットのアヒルは1日に16個の卵を生みます")
    assert [r["answer"] for r in ja] == [r["answer"] for r in en]


def test_load_eval_problems_real_files():
    assert len(load_eval_problems("gsm8k_test", str(shared_file("gsm8k", "test.jsonl")))) == 1319
    assert len(load_eval_problems("math500", str(shared_file("math500", "test.jsonl")))) == 500
    ja = load_eval_problems("mgsm_ja", str(shared_file("mgsm", "mgsm_ja.tsv")))
    assert len(ja) == 250 and all(isinstance(p, str) and p for p in ja)
    with pytest.raises(CompassError, match=r"unknown evaluation set 'gsm8k'.*gsm8k_test.*math500"):
        load_eval_problems("gsm8k")


# --- sampling -----------------------------------------------------------------------------------


def test_limit_is_a_deterministic_seeded_sample():
    path = str(shared_file("gsm8k", "train.jsonl"))
    full = load_source({"name": "gsm8k", "path": path})
    a = load_source({"name": "gsm8k", "path": path, "limit": 100}, seed=42)
    b = load_source({"name": "gsm8k", "path": path, "limit": 100}, seed=42)
    c = load_source({"name": "gsm8k", "path": path, "limit": 100}, seed=7)
    assert a == b and len(a) == 100
    assert [r["id"] for r in a] != [r["id"] for r in c]
    assert [r["id"] for r in a] == sorted(r["id"] for r in a)  # file order
    by_id = {r["id"]: r for r in full}
    assert all(by_id[r["id"]] == r for r in a)  # same rows, same ids as the full load
    assert {r["id"] for r in a} != {r["id"] for r in full[:100]}  # a sample, not the head
    assert load_source({"name": "gsm8k", "path": path, "limit": 10**6}) == full


def test_limit_skips_rows_without_a_problem_and_still_fills(tmp_path):
    rows = [{"question": "" if i % 2 else f"Q{i}?", "answer": f"x\n#### {i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    out = load_source({"name": "gsm8k", "path": path, "limit": 15})
    assert len(out) == 15 and all(r["problem"] for r in out)
    assert len(load_source({"name": "gsm8k", "path": path})) == 20


# --- Hub-only sources, as small files in their upstream schema ------------------------------------


def test_math_upstream_layouts(tmp_path):
    # EleutherAI/hendrycks_math parquet: problem, level, type, solution (no answer column).
    row = {
        "problem": "What is $1+1$?",
        "level": "Level 1",
        "type": "Prealgebra",
        "solution": r"We have $1+1=\boxed{2}$. Also \boxed{\frac{1}{2}} is not it; the answer is $\boxed{\text{two}}$.",
    }
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", [row, {**row, "solution": "no box here"}])
    rows = load_source({"name": "math", "path": path})
    check_rows(rows, "math")
    assert rows[0]["answer"] == r"\text{two}" and rows[0]["solution"] == row["solution"]
    assert rows[1]["answer"] == "" and rows[0]["id"] == "math-train-000000"
    # The original MATH release: a directory of one-object .json files.
    (tmp_path / "MATH" / "train" / "algebra").mkdir(parents=True)
    (tmp_path / "MATH" / "train" / "algebra" / "1.json").write_text(json.dumps(row))
    (tmp_path / "MATH" / "train" / "algebra" / "2.json").write_text(json.dumps({**row, "solution": r"so \fbox{7}"}))
    rows = load_source({"name": "math", "path": str(tmp_path / "MATH" / "train")})
    assert [r["answer"] for r in rows] == [r"\text{two}", "7"]
    assert rows[0]["id"] == "math-train-000000"


def test_mathinstruct(tmp_path):
    path = write_jsonl(
        tmp_path / "MathInstruct.json",
        [
            {"source": "data/CoT/gsm_rft.json", "output": "She has 3+4=7 apples.\nThe answer is 7.", "instruction": "Tom has 3 apples and gets 4. How many?"},
            {"source": "data/CoT/aqua_rat.json", "output": "Let's think.\nThe answer is (C).", "instruction": "Pick one. Answer Choices: (A) 1 (B) 2 (C) 3"},
            {"source": "data/CoT/MATH_train.json", "output": r"So it is $\boxed{1,000}$.", "instruction": "Compute $10^3$."},
            {"source": "data/PoT/mathqa.json", "output": "n0 = 3.0\nanswer = n0 * 2\nprint(answer)", "instruction": "Double 3."},
        ],
    )
    rows = load_source({"name": "mathinstruct", "path": path})
    check_rows(rows, "mathinstruct")
    assert [r["answer"] for r in rows] == ["7", "C", "1000", ""]
    assert rows[0]["solution"].startswith("She has") and rows[3]["solution"] is None
    assert rows[3]["problem"] == "Double 3."


def test_openr1_math(tmp_path):
    row = {
        "problem": "Find $x$ if $2x=6$.",
        "solution": r"Divide by 2: $x=\boxed{3}$.",
        "answer": "3",
        "problem_type": "Algebra",
        "question_type": "math-word-problem",
        "source": "olympiads",
        "uuid": "5b1c2d3e",
        "is_reasoning_complete": [True, True],
        "generations": ["<think>\n2x=6 so x=3\n</think>\n\\boxed{3}", "<think>x=3</think> \\boxed{3}"],
        "correctness_math_verify": [True, True],
        "correctness_llama": None,
        "finish_reasons": None,
        "correctness_count": 2,
        "messages": [{"role": "user", "content": "Find $x$ if $2x=6$."}, {"role": "assistant", "content": "x=3"}],
    }
    path = write_parquet(tmp_path / "default-train.parquet", [row, {**row, "answer": "", "solution": r"so $\boxed{4}$"}])
    rows = load_source({"name": "openr1_math", "path": path})
    check_rows(rows, "openr1_math")
    assert [r["answer"] for r in rows] == ["3", "4"]  # the answer column, else the last \boxed{}
    assert rows[0]["solution"] == row["solution"]


def test_orca_math(tmp_path):
    path = write_jsonl(
        tmp_path / "orca.jsonl",
        [
            {"question": "A number plus 5 is 12. What is the number?", "answer": "Let the number be x. x + 5 = 12, so x = 12 - 5 = 7.\n\nThe number is 7."},
            {"question": "What is 1,200 divided by 3?", "answer": "1,200 / 3 = 400. So the result is 400."},
            {"question": "Describe a triangle.", "answer": "A triangle has three sides."},
        ],
    )
    rows = load_source({"name": "orca_math", "path": path})
    check_rows(rows, "orca_math")
    assert [r["answer"] for r in rows] == ["7", "400", ""]
    assert rows[0]["solution"].startswith("Let the number be x.")


def test_numinamath_cot(tmp_path):
    rows_in = [
        {
            "source": "synthetic_math",
            "problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.",
            "solution": "Adding, $\\frac{1}{2}+\\frac{1}{2} = \\boxed{1}$.",
            "messages": [{"role": "user", "content": "Compute"}, {"role": "assistant", "content": "1"}],
        },
        {"source": "cn_k12", "problem": "  Solve $x^2=4$ for $x>0$.  ", "solution": "x = \\boxed{\\{2\\}}", "messages": []},
    ]
    rows = load_source({"name": "numinamath_cot", "path": write_parquet(tmp_path / "train.parquet", rows_in)})
    check_rows(rows, "numinamath_cot")
    assert [r["answer"] for r in rows] == ["1", "\\{2\\}"]
    assert rows[1]["problem"] == "Solve $x^2=4$ for $x>0$."


def test_open_math_reasoning_one_row_per_problem(tmp_path):
    def row(problem, answer, gen):
        return {
            "expected_answer": answer,
            "problem_type": "has_answer_extracted",
            "problem_source": "aops_c4_high_school_math",
            "generation_model": "DeepSeek-R1",
            "pass_rate_72b_tir": "0.5",
            "problem": problem,
            "generated_solution": gen,
            "inference_mode": "cot",
            "used_in_kaggle": False,
        }

    rows_in = [
        row("Find the sum of 2 and 3.", "5", "<think>\n2+3=5, check.\n</think>\nThe sum is $2+3=\\boxed{5}$."),
        row("Find the sum of 2 and 3.", "5", "<think>other</think>\nAgain $\\boxed{5}$."),
        row("Find $7 \\cdot 6$.", "42", "No think block here: $\\boxed{42}$."),
        row("Find the sum of 2 and 3.", "5", "<think>third</think>5"),
    ]
    path = write_parquet(tmp_path / "cot-00000-of-00144.parquet", rows_in)
    rows = load_source({"name": "open_math_reasoning", "path": path})
    check_rows(rows, "open_math_reasoning")
    assert [r["id"] for r in rows] == ["open_math_reasoning-cot-000000", "open_math_reasoning-cot-000002"]
    assert rows[0]["solution"] == "The sum is $2+3=\\boxed{5}$." and rows[0]["answer"] == "5"
    assert rows[1]["solution"] == "No think block here: $\\boxed{42}$."
    assert len(load_source({"name": "open_math_reasoning", "path": path, "limit": 1})) == 1


def test_csv_and_tsv_with_header(tmp_path):
    p = tmp_path / "test.csv"
    p.write_text('question,answer\n"Q, with comma?","w\n#### 1,000"\n', encoding="utf-8")
    rows = load_source({"name": "gsm8k", "path": str(p)})
    assert rows[0]["problem"] == "Q, with comma?" and rows[0]["answer"] == "1000" and rows[0]["solution"] == "w"
    t = tmp_path / "svamp.tsv"
    t.write_text("Body\tQuestion\tEquation\tAnswer\nHe has 3 pens.\tHow many?\t( 3.0 )\t3.0\n", encoding="utf-8")
    assert load_source({"name": "svamp", "path": str(t)})[0]["answer"] == "3"


# --- the Hub path (datasets.load_dataset replaced by a local stand-in) ------------------------------


def test_hub_loading_calls_load_dataset_per_config_and_concatenates(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        if path == "openai/gsm8k":
            return datasets.Dataset.from_list([{"question": "Q1?", "answer": "w\n#### 3"}, {"question": "Q2?", "answer": "#### 4"}])
        rows = [{"problem": f"{name} problem {i}", "level": "Level 1", "type": name, "solution": f"$\\boxed{{{i}}}$"} for i in range(3)]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_source({"name": "math", "path": None, "hf_id": None, "split": None, "limit": None})
    assert calls == [("EleutherAI/hendrycks_math", s, "train") for s in sources.MATH_SUBJECTS]
    assert len(rows) == 21 and rows[0]["id"] == "math-train-000000" and rows[20]["answer"] == "2"
    check_rows(rows, "math")

    calls.clear()
    sample = load_source({"name": "math", "limit": 5}, seed=1)
    assert len(sample) == 5 and sample == load_source({"name": "math", "limit": 5}, seed=1)
    assert all(r in rows for r in sample)

    calls.clear()  # another repository: its default config, unless hf_config says otherwise
    load_source({"name": "math", "hf_id": "someone/MATH-copy", "split": "test"})
    load_source({"name": "math", "hf_id": "someone/MATH-copy", "hf_config": ["a", "b"], "split": "test"})
    assert calls == [("someone/MATH-copy", None, "test"), ("someone/MATH-copy", "a", "test"), ("someone/MATH-copy", "b", "test")]

    calls.clear()
    assert load_eval_problems("gsm8k_test") == ["Q1?", "Q2?"]
    assert calls == [("openai/gsm8k", "main", "test")]


def test_hub_dedupe_and_errors(monkeypatch):
    import datasets

    def fake_load_dataset(path, name=None, split=None, **kw):
        if path == "nvidia/OpenMathReasoning":
            assert split == "cot"
            return datasets.Dataset.from_list(
                [{"problem": p, "generated_solution": "<think>t</think>ok", "expected_answer": a} for p, a in [("P1", "1"), ("P1", "1"), ("P2", "2")]]
            )
        raise ConnectionError("Hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_source({"name": "open_math_reasoning"})
    assert [(r["id"], r["answer"], r["solution"]) for r in rows] == [
        ("open_math_reasoning-cot-000000", "1", "ok"),
        ("open_math_reasoning-cot-000002", "2", "ok"),
    ]
    with pytest.raises(CompassError, match=r"AI-MO/NuminaMath-CoT: could not load split 'train'.*Hub unreachable.*path"):
        load_source({"name": "numinamath_cot"})


# --- errors -------------------------------------------------------------------------------------


def test_unknown_source_names_the_known_ones():
    with pytest.raises(CompassError, match=r"unknown data source 'gsm9k' \(known: .*aqua_rat.*gsm8k.*open_math_reasoning"):
        load_source({"name": "gsm9k", "path": "x.jsonl"})


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "train.jsonl"
    with pytest.raises(CompassError, match=re.escape(str(missing))):
        load_source({"name": "gsm8k", "path": str(missing)})


def test_malformed_lines_name_file_and_line(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"question": "q", "answer": "#### 1"}\n{"question": oops}\n', encoding="utf-8")
    with pytest.raises(CompassError, match=rf"{re.escape(str(p))}:2:"):
        load_source({"name": "gsm8k", "path": str(p)})
    a = tmp_path / "dev.json"  # AQuA: JSON lines under a .json name
    a.write_text('{"question": "q", "options": ["A)1"], "rationale": "r", "correct": "A"}\n[1]\n', encoding="utf-8")
    with pytest.raises(CompassError, match=rf"{re.escape(str(a))}:2: expected a JSON object"):
        load_source({"name": "aqua_rat", "path": str(a)})
    j = tmp_path / "SVAMP.json"
    j.write_text('[\n {"Body": "b"},\n {"Body": }\n]', encoding="utf-8")
    with pytest.raises(CompassError, match=rf"{re.escape(str(j))}:3:"):
        load_source({"name": "svamp", "path": str(j)})
    t = tmp_path / "mgsm_ja.tsv"
    t.write_text("問題です\t3\n改行のない行\n", encoding="utf-8")
    with pytest.raises(CompassError, match=rf"{re.escape(str(t))}:2: expected 2 tab-separated fields"):
        load_source({"name": "mgsm_ja", "path": str(t)})


def test_bad_spec_values(tmp_path):
    p = write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(CompassError, match="limit must be a positive integer"):
        load_source({"name": "gsm8k", "path": p, "limit": 0})
    x = tmp_path / "train.txt"
    x.write_text("q\n")
    with pytest.raises(CompassError, match=r"unsupported file type \.txt"):
        load_source({"name": "gsm8k", "path": str(x)})
    with pytest.raises(CompassError, match="give a local `path` or a Hugging Face `hf_id`"):
        load_source({"name": "math500"})


def test_a_file_of_another_source_is_refused():
    with pytest.raises(CompassError, match=r"no row with a problem for source orca_math \(its problem column is 'question'; this file has: answer, level, problem"):
        load_source({"name": "orca_math", "path": str(shared_file("math500", "test.jsonl"))})


# --- answer helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, want",
    [("1,000", "1000"), (51.0, "51"), (0.5, "0.5"), (" 18. ", "18"), (18, "18"), ("$1,250.50", "1250.5"), ("\\frac{1}{2}", "\\frac{1}{2}"), (None, "")],
)
def test_clean_number(raw, want):
    assert clean_number(raw) == want


def test_answers_of_worked_solutions():
    assert boxed_answer(r"a \boxed{1} b \boxed{\frac{1}{\sqrt{2}}} c") == r"\frac{1}{\sqrt{2}}"
    assert boxed_answer(r"so \boxed 5 done") == "5"
    assert boxed_answer(r"the roots are $\boxed{-2}$ and $\boxed{1}$.") == "-2, 1"
    assert boxed_answer("none") is None
    assert solution_answer("The answer is: 18") == "18"
    assert solution_answer("Therefore the final answer is Option D.") == "D"
    assert solution_answer("The answer is (C) 24.") == "C"
    assert solution_answer("He pays 2 * 3 = 6 dollars, then 6 + 4 = 10 dollars.") == "10"
    assert solution_answer("So the total is $1,200.") == "1200"
    assert solution_answer(r"Thus $x = \boxed{\frac{3}{4}}$.") == r"\frac{3}{4}"
    assert solution_answer("") == "" and solution_answer("def f(): return x") == ""
