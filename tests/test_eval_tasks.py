"""Evaluation task loaders: the real files in ../shared/data (skipped when absent), and the Hub-only
tasks (chABSA, EDINET-Bench) on small files written here in their upstream schemas."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from upstream_fixtures import CHABSA_REPORT, edinet_rows

from compass.eval import tasks
from compass.io import CompassError, read_jsonl


@pytest.mark.parametrize(
    "task, parts, n, first_answer",
    [
        ("gsm8k", ("gsm8k", "test.jsonl"), 1319, "18"),
        ("mgsm_ja", ("mgsm", "mgsm_ja.tsv"), 250, "18"),
        ("math500", ("math500", "test.jsonl"), 500, "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_math_tasks_from_the_real_files(task, parts, n, first_answer):
    rows = tasks.load_task(task, {"path": str(shared_file(*parts))})
    assert len(rows) == n and rows[0]["answer"] == first_answer
    assert {"id", "lang", "problem", "answer"} <= set(rows[0])
    assert rows[0]["lang"] == ("ja" if task == "mgsm_ja" else "en")


@pytest.mark.parametrize(
    "task, parts, n, n_choices",
    [
        ("cma_basics", ("jp_fin_harness", "cma_basics", "data.json"), 38, {4}),
        ("fp2", ("jp_fin_harness", "fp2", "data.json"), 475, {4}),
        ("security_sales_1", ("jp_fin_harness", "security_sales_1", "data.json"), 57, {2, 4}),
        ("cpa_audit", ("jp_fin_harness", "cpa_audit", "CPA_AUDIT.xlsx"), 398, {5, 6}),
    ],
)
def test_fin_harness_tasks_from_the_real_files(task, parts, n, n_choices):
    rows = tasks.load_task(task, {"path": str(shared_file(*parts))})
    assert len(rows) == n
    assert {len(r["choices"]["id"]) for r in rows} == n_choices
    assert all(r["answer"] in r["choices"]["id"] for r in rows)
    assert all(r["question"] and all(r["choices"]["text"]) for r in rows)


def test_cpa_audit_rows_like_the_harness_loader():
    rows = tasks.load_task("cpa_audit", {"path": str(shared_file("jp_fin_harness", "cpa_audit", "CPA_AUDIT.xlsx"))})
    first = rows[0]
    assert first["context"].startswith("ア: ") and "\nイ: " in first["context"]
    assert first["choices"]["id"] == [0, 1, 2, 3, 4, 5] and first["answer"] == 0  # a_no 1 -> 0


def _xlsx(path, header, rows):
    """An .xlsx in the layout of CPA_AUDIT.xlsx (sheet "data", the header row first)."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "data"
    for row in [header, *rows]:
        sheet.append(row)
    workbook.save(path)


def test_cpa_audit_xlsx_written_here(tmp_path):
    header = ["key", "q_no", "question", "ア", "イ", "ウ", "エ", "オ", "カ", "a_no", 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, "abnormal_flg"]
    combos = ["アイ", "アウ", "アエ", "イウ", "イエ", "ウエ"]
    rows = [
        ["R5_2", 1.0, "正しいものの組合せを選べ。", "文1", "文2", "文3", None, None, None, 3.0, *combos, 0.0],
        ["R5_2", 2.0, "壊れた問題", "x", None, None, None, None, None, 1.0, *combos, 1.0],  # abnormal: skipped
        ["R5_2", 3.0, None, None, None, None, None, None, None, 1.0, *combos, 0.0],  # no question: skipped
    ]
    path = tmp_path / "CPA_AUDIT.xlsx"
    _xlsx(path, header, rows)
    out = tasks.load_task("cpa_audit", {"path": str(path)})
    assert out == [{"id": 0, "question": "正しいものの組合せを選べ。", "context": "ア: 文1\nイ: 文2\nウ: 文3",
                    "choices": {"id": [0, 1, 2, 3, 4, 5], "text": combos}, "answer": 2}]
    (tmp_path / "broken.xlsx").write_bytes(b"not a spreadsheet")
    with pytest.raises(CompassError, match="broken.xlsx: not a readable .xlsx file"):
        tasks.load_task("cpa_audit", {"path": str(tmp_path / "broken.xlsx")})


def test_chabsa_from_its_release_directory(tmp_path):
    d = tmp_path / "chABSA-dataset"
    d.mkdir()
    (d / "e00001_ann.json").write_text(json.dumps(CHABSA_REPORT, ensure_ascii=False), encoding="utf-8")
    other = dict(CHABSA_REPORT, sentences=[CHABSA_REPORT["sentences"][0]])
    (d / "e00002_ann.json").write_text(json.dumps(other, ensure_ascii=False), encoding="utf-8")
    rows = tasks.load_task("chabsa", {"path": str(tmp_path)})
    assert [(r["target"], r["polarity"]) for r in rows] == [("売上高", "positive"), ("営業利益", "negative"), ("費用", "neutral"), ("売上高", "positive")]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]


def test_chabsa_from_flat_rows(tmp_path):
    path = tmp_path / "chabsa.jsonl"
    path.write_text('{"sentence": "s", "target": "t", "polarity": "negative"}\n', encoding="utf-8")
    assert tasks.load_task("chabsa", {"path": str(path)}) == [{"id": 0, "sentence": "s", "target": "t", "polarity": "negative"}]


@pytest.mark.parametrize("task", ["fraud_detection", "earnings_forecast", "industry_prediction"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_edinet_from_files_in_the_upstream_schema(tmp_path, task, fmt):
    raw = edinet_rows(task)
    path = tmp_path / f"{task}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in raw), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(raw), path)
    rows = tasks.load_task(task, {"path": str(path)})
    assert len(rows) == 4
    label = [r["industry"] for r in raw] if task == "industry_prediction" else [r["label"] for r in raw]
    assert [r["label"] for r in rows] == label
    assert set(rows[0]) >= {"id", "edinet_code", "doc_id", "label", "summary", "bs", "pl", "cf", "text", "meta"}


def test_edinet_hub_rows_go_through_the_same_normaliser(monkeypatch):
    calls = []

    def fake_hub(hf_id, cfg, split):
        calls.append((hf_id, cfg, split))
        return edinet_rows("industry_prediction", 2)

    monkeypatch.setattr(tasks, "_read_hub", fake_hub)
    rows = tasks.load_task("industry_prediction", {})
    assert calls == [("SakanaAI/EDINET-Bench", "industry_prediction", "train")]  # its only split
    assert [r["label"] for r in rows] == ["銀行", "小売"]


def test_missing_source_and_bad_rows_are_one_line_errors(tmp_path):
    with pytest.raises(CompassError, match=r"eval.data.chabsa: give a local `path`"):
        tasks.load_task("chabsa", {})
    bad = tmp_path / "fraud.jsonl"
    bad.write_text('{"summary": "x"}\n', encoding="utf-8")
    with pytest.raises(CompassError, match="no 'label' column"):
        tasks.load_task("fraud_detection", {"path": str(bad)})
    mc = tmp_path / "data.json"
    mc.write_text(json.dumps({"data": [{"id": 0, "question": "q", "context": "", "choices": [{"id": 0, "text": "a"}], "answer": 3}]}))
    with pytest.raises(CompassError, match="answer 3 is not one of the choice ids"):
        tasks.load_task("cma_basics", {"path": str(mc)})


def test_eval_data_cli(tmp_path):
    from compass.cli import main

    src = tmp_path / "fraud.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in edinet_rows("fraud_detection", 3)), encoding="utf-8")
    out = tmp_path / "test" / "fraud_detection.jsonl"
    assert main(["eval-data", "--set", f"eval.data.fraud_detection.path={src}", "--task", "fraud_detection", "--out", str(out)]) == 0
    assert [r["label"] for r in read_jsonl(out)] == [0, 1, 0]
