"""EDINET-Bench: the upstream prompts, JSON answer parsing (failures counted, never dropped), metrics."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import shared_file

from compass.eval import edinet


@pytest.mark.parametrize("task", ["fraud_detection", "earnings_forecast", "industry_prediction"])
def test_prompts_are_upstreams(task):
    upstream = yaml.safe_load(shared_file("edinet_bench", "prompt", f"{task}.yaml").read_text(encoding="utf-8"))["prompt"]
    assert edinet.PROMPTS[task] == upstream


def test_prompt_joins_sheets_like_upstream_predict():
    row = {"summary": '{"a": 1}', "bs": "{}", "pl": "x", "cf": "y", "text": "long"}
    text = edinet.prompt_text("fraud_detection", row)
    assert text == edinet.PROMPTS["fraud_detection"] + 'summary: {"a": 1}\nbs: {}\npl: x\ncf: y'
    assert edinet.prompt_text("industry_prediction", row, ["text"]) == edinet.PROMPTS["industry_prediction"] + "text: long"
    msgs = edinet.messages("fraud_detection", row)
    assert msgs[0] == {"role": "system", "content": "You are a financial analyst."}


@pytest.mark.parametrize(
    "output, expected",
    [
        ('JSON:\n```json\n{"reasoning": "ok", "prob": 0.8, "prediction": 1}\n```', (1, 0.8, None, None)),
        ('I think {"reasoning": "a {brace} inside", "prob": 0.2, "prediction": 0} done', (0, 0.2, None, None)),
        ('```json\n{"reasoning": "no prob", "prediction": "1"}\n```', (1, None, None, "missing_prob")),
        ('{"reasoning": "x", "prob": 1.7, "prediction": 1}', (1, None, None, "invalid_prob")),
        ('{"reasoning": "x", "prob": 0.5, "prediction": 2}', (None, 0.5, "invalid_prediction", None)),
        ('{"reasoning": "x", "prob": 0.5}', (None, None, "missing_prediction", None)),
        ("The company looks fine.", (None, None, "no_json", None)),
        ('```json\n{"reasoning": "broken", "prediction": 1,\n```\n{"prediction": 0, "prob": 0.1}', (0, 0.1, None, None)),
        ("", (None, None, "no_json", None)),
    ],
)
def test_parse_answer(output, expected):
    got = edinet.parse_answer("fraud_detection", output)
    assert (got["prediction"], got["prob"], got["error"], got["prob_error"]) == expected


def test_industry_answers_must_be_a_category():
    ok = edinet.parse_answer("industry_prediction", '{"reasoning": "r", "prediction": "金融（除く銀行）"}')
    assert ok["prediction"] == "金融(除く銀行)" and ok["error"] is None  # full-width brackets normalised
    bad = edinet.parse_answer("industry_prediction", '{"reasoning": "r", "prediction": "Banking"}')
    assert bad["error"] == "invalid_prediction"


def test_score_reports_parse_failures_and_upstream_metrics():
    rows = [{"id": i, "label": lab} for i, lab in enumerate([1, 0, 1, 0, 1, 0])]
    outs = [
        '{"prob": 0.9, "prediction": 1}', '{"prob": 0.2, "prediction": 0}', '{"prob": 0.4, "prediction": 0}',
        '{"prob": 0.6, "prediction": 1}', "no idea", '{"prediction": 0}',
    ]
    graded, s = edinet.score("fraud_detection", rows, outs)
    assert s["n"] == 6 and s["n_parsed"] == 5 and s["parse_failure_rate"] == pytest.approx(1 / 6)
    assert s["parse_failures"] == {"no_json": 1}
    assert s["accuracy"] == pytest.approx(3 / 5)  # over the parsed rows, as upstream
    assert s["accuracy_all"] == pytest.approx(3 / 6)  # failures counted wrong
    assert s["n_with_prob"] == 4 and s["roc_auc"] == pytest.approx(0.75)
    assert len(graded) == 6 and graded[4]["error"] == "no_json" and graded[4]["correct"] is False


def test_score_with_nothing_parsed_has_undefined_metrics():
    _, s = edinet.score("earnings_forecast", [{"id": 0, "label": 1}], ["?"])
    assert s["parse_failure_rate"] == 1.0 and s["mcc"] is None and s["accuracy"] is None


def test_industry_score():
    rows = [{"id": 0, "label": "銀行"}, {"id": 1, "label": "小売"}, {"id": 2, "label": "小売"}]
    outs = ['{"prediction": "銀行"}', '{"prediction": "小売"}', '{"prediction": "不明"}']
    _, s = edinet.score("industry_prediction", rows, outs)
    assert s["accuracy"] == 1.0 and s["n_parsed"] == 2 and s["parse_failures"] == {"invalid_prediction": 1}


def test_roc_auc_is_undefined_with_one_class_and_mcc_zero_without_a_margin():
    rows = [{"id": 0, "label": 1}, {"id": 1, "label": 1}]
    _, s = edinet.score("fraud_detection", rows, ['{"prob": 0.9, "prediction": 1}', '{"prob": 0.2, "prediction": 0}'])
    assert s["roc_auc"] is None and s["mcc"] == 0.0 and s["precision"] == 1.0 and s["recall"] == 0.5
    assert json.loads(json.dumps(s)) == s  # plain floats in the summary
