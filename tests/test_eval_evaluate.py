"""`compass evaluate` on each task kind with the tiny Phase 1 (VLM) and its LLM."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, shared_file
from upstream_fixtures import edinet_rows

from compass import config
from compass.cli import main
from compass.eval import evaluate
from compass.io import read_jsonl


def test_step_by_step_variant_messages():
    en = evaluate.math_messages({"problem": "What is 2+3?", "lang": "en"}, "step_by_step")
    ja = evaluate.math_messages({"problem": "2+3は？", "lang": "ja"}, "step_by_step")
    assert en[1]["content"] == "What is 2+3?\nLet's think step by step." and en[0]["content"].startswith("You are")
    assert ja[1]["content"] == "2+3は？\nステップバイステップで考えましょう。" and ja[0]["content"].startswith("あなたは")
    assert evaluate.math_messages({"problem": "p", "lang": "en"})[1]["content"] == "p"


def test_math_task_on_the_vlm(tmp_path, phase1_dir):
    data = tmp_path / "gsm8k.jsonl"
    rows = [{"id": f"g{i}", "lang": "en", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval" / "phase1" / "gsm8k.json"
    argv = ["evaluate", "--set", "eval.max_new_tokens=8", "--set", "eval.limit=3", "--set", "eval.batch_size=2",
            "--model", str(phase1_dir), "--label", "phase1", "--task", "gsm8k", "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    assert (s["model"], s["task"], s["variant"], s["kind"], s["primary"], s["n"]) == ("phase1", "gsm8k", "default", "math", "accuracy", 3)
    assert 0 <= s["accuracy"] <= 1 and 0 <= s["well_formed_rate"] <= 1
    assert s["decoding"] == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 42}
    preds = read_jsonl(out.with_suffix(".predictions.jsonl"))
    assert [p["id"] for p in preds] == ["g0", "g1", "g2"] and all("prediction" in p and "correct" in p for p in preds)
    # greedy + seeded: the same outputs again
    cfg = config.load([REPO / "config/config.yaml"], sets=["eval.max_new_tokens=8", "eval.batch_size=3"])
    _, again = evaluate.evaluate_task(phase1_dir, "gsm8k", rows[:3], cfg)
    assert again["accuracy"] == s["accuracy"]


def test_real_mgsm_rows_through_the_grader(tmp_path, phase1_llm):
    path = shared_file("mgsm", "mgsm_ja.tsv")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--set", f"eval.data.mgsm_ja.path={path}", "--set", "eval.limit=2", "--set", "eval.max_new_tokens=4",
                 "--model", str(phase1_llm), "--task", "mgsm_ja", "--variant", "step_by_step", "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["variant"] == "step_by_step" and s["n"] == 2 and s["per_lang"]["ja"]["n"] == 2


def test_edinet_task_cuts_long_reports_and_reports_parse_failures(tmp_path, phase1_llm):
    src = tmp_path / "fraud.jsonl"
    raw = edinet_rows("fraud_detection", 3)
    for r in raw:
        r["text"] = "長い本文。" * 400
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in raw), encoding="utf-8")
    out = tmp_path / "fraud.json"
    argv = ["evaluate", "--set", f"eval.data.fraud_detection.path={src}", "--set", "eval.max_new_tokens=8",
            "--set", "eval.max_prompt_tokens=300", "--set", "eval.edinet_sheets=[summary, text]",
            "--model", str(phase1_llm), "--task", "fraud_detection", "--out", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    assert s["kind"] == "edinet" and s["n"] == 3 and s["prompts_truncated"] == 3
    assert s["n_parsed"] + sum(s["parse_failures"].values()) == 3  # every row accounted for
    assert "parse_failure_rate" in s and s["primary"] == "mcc"
    preds = read_jsonl(out.with_suffix(".predictions.jsonl"))
    assert len(preds) == 3 and all("output" in p and "error" in p for p in preds)


def test_variant_on_a_non_math_task_is_refused(phase1_llm):
    from compass.io import CompassError

    with pytest.raises(CompassError, match="math tasks only"):
        evaluate.evaluate_task(phase1_llm, "fraud_detection", [{"id": 0, "label": 1}], config.load([REPO / "config/config.yaml"]),
                               "step_by_step")
