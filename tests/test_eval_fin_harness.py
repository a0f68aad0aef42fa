"""The Japanese financial harness on lm-evaluation-harness: the harness's default prompts, the
chABSA macro-F1, and log-likelihood scoring of a tiny LLM and of a tiny VLM's language model."""

from __future__ import annotations

import pytest

from conftest import shared_file

from compass.eval import fin_harness, tasks

pytest.importorskip("lm_eval")

DOC = {"id": 0, "question": "次のうち正しいものはどれか。", "context": "補足", "choices": {"id": [0, 1, 2], "text": ["甲", "乙", "丙"]}, "answer": 1}


def test_default_prompts_are_the_harness_templates():
    assert fin_harness.doc_to_text_with_choices(DOC) == "【問題】\n次のうち正しいものはどれか。\n補足\n\n【選択肢】\nA: 甲\nB: 乙\nC: 丙\n\n【答え】\n"
    assert fin_harness.doc_to_text_fp2(DOC) == "【問題】\n次のうち正しいものはどれか。\n補足\n\n【答え】\n"
    assert fin_harness.letter_choices(DOC) == ["A", "B", "C"] and fin_harness.letter_target(DOC) == "B"
    assert fin_harness.text_choices(DOC) == ["甲", "乙", "丙"] and fin_harness.text_target(DOC) == "乙"
    cfg = fin_harness.task_config("fp2", [DOC])
    assert cfg["description"] == "以下の問題の適切な答えを選択肢から選んで１～４の数字で答えなさい。\n\n\n" and cfg["target_delimiter"] == ""
    ch = fin_harness.task_config("chabsa", [])
    assert ch["doc_to_text"]({"sentence": "S", "target": "T"}) == "センテンス: S\nターゲット: T\n回答:"
    assert ch["doc_to_choice"] == ["positive", "negative"] and "target_delimiter" not in ch  # lm-eval's " "


def test_chabsa_f1_is_the_harness_adjusted_macro_f1():
    sk = pytest.importorskip("sklearn.metrics")
    gold = ["positive", "negative", "neutral", "positive", "negative", "neutral", "positive"]
    pred = ["positive", "negative", "positive", "negative", "negative", "negative", "positive"]
    harness = sk.f1_score(gold, pred, average="macro") * 1.5  # its 2class_adjusted_macro_f1_score_for_chabsa
    assert fin_harness.chabsa_macro_f1(gold, pred) == pytest.approx(harness)
    idx = {"positive": 0, "negative": 1}
    assert fin_harness.chabsa_f1_items([(idx.get(g, -100), idx[p]) for g, p in zip(gold, pred)]) == pytest.approx(harness)


@pytest.fixture(scope="module")
def cma_rows():
    path = shared_file("jp_fin_harness", "cma_basics", "data.json")
    return tasks.load_task("cma_basics", {"path": str(path)})[:6]


def _ecfg(batch_size=8):
    return {"backend": "hf", "batch_size": batch_size, "dtype": "auto"}


def test_scoring_a_llm_and_the_vlm_language_model_agree(phase1_dir, phase1_llm, cma_rows):
    out_llm, s_llm = fin_harness.run(fin_harness.make_lm(_ecfg(), phase1_llm, 0), "cma_basics", cma_rows)
    out_vlm, s_vlm = fin_harness.run(fin_harness.make_lm(_ecfg(4), phase1_dir, 0), "cma_basics", cma_rows)
    assert s_llm["n"] == 6 and s_llm["engine"].startswith("lm-eval")
    assert s_llm["accuracy"] == pytest.approx(s_llm["lm_eval"]["acc"])  # our recount == lm-eval's aggregation
    assert s_llm["accuracy_norm"] == pytest.approx(s_llm["lm_eval"]["acc_norm"])
    for a, b in zip(out_llm, out_vlm):  # the VLM is scored by its own language model: same numbers
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-3)
        assert len(a["loglikelihoods"]) == 4 and a["gold"] in a["choices"]


def test_chabsa_run_counts_neutral_golds(phase1_llm):
    rows = [{"id": i, "sentence": f"売上は{i}", "target": "売上", "polarity": p}
            for i, p in enumerate(["positive", "negative", "neutral", "positive"])]
    out, s = fin_harness.run(fin_harness.make_lm(_ecfg(), phase1_llm, 0), "chabsa", rows)
    assert s["n_neutral_gold"] == 1 and all(r["prediction"] in ("positive", "negative") for r in out)
    assert s["macro_f1"] == pytest.approx(s["lm_eval"]["f1"])


def test_vllm_log_likelihoods_equal_transformers(phase1_dir, phase1_llm, cma_rows):
    """The vllm backend scores through compass's own vLLM engine (the real engine, CPU build here):
    the same log-likelihoods as lm-eval's HFLM, on the LLM and on the VLM checkpoint."""
    cfg = {"chat": {}, "vllm": {"engine_kwargs": {"enforce_eager": True, "kv_cache_memory_bytes": 64 << 20, "max_model_len": 1024}}}
    vllm_cfg = {**_ecfg(), "backend": "vllm", "tensor_parallel_size": 1}
    out_hf, _ = fin_harness.run(fin_harness.make_lm(_ecfg(), phase1_llm, 0), "cma_basics", cma_rows)
    out_vllm, s = fin_harness.run(fin_harness.make_lm(vllm_cfg, phase1_dir, 0, cfg), "cma_basics", cma_rows)
    for a, b in zip(out_hf, out_vllm):
        assert b["loglikelihoods"] == pytest.approx(a["loglikelihoods"], abs=1e-2)
        assert b["prediction"] == a["prediction"]
    assert s["accuracy"] == pytest.approx(s["lm_eval"]["acc"])
